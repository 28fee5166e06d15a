"""
ranks.py — more than one GPU: one agent per process (torchrun), the agents exchanging only texts and rewards.

    torchrun --standalone --nproc_per_node 2 ilr.py --preset demo        # agent i in rank i (one node)
    torchrun --nnodes 2 --nproc_per_node 1 --node_rank 0 --rdzv_backend c10d \
             --rdzv_endpoint HOST:29500 --rdzv_id ilr1 ilr.py ...        # two nodes, one agent each
    pytest tests/test_ranks.py

Where it sits: ILR's agents share no weights and no gradients, only what they say to each other: the Idea3 texts,
their grades, their rewards (Eq. 5 reads the peers' rewards), and before training the abilities γ_i and the
self-ranked difficulties D_q that decide the modes. So a run of M agents splits into M processes (ranks), one agent
each, with no change to the algorithm: every rank walks through the same `ilr.train_step`; wherever the step does
something per agent (generate, grade, update, evaluate), `each_agent` runs it for the agent this rank holds and
gathers the results of all agents, in agent order, on every rank. Every rank then holds the same texts, rewards,
advantages and metrics as a single process would, and decides the same modes. Without torchrun (no WORLD_SIZE in
the environment) nothing here does anything: `each_agent` is a plain loop, `on_main` a plain call.

Choices (OURS; the paper does not say how its pairs were placed):
1. One agent per rank: torchrun's world size must equal the number of agents (one line otherwise). Agent i lives in
   rank i, on cuda:<LOCAL_RANK> when CUDA is there (ilr.make_agents), else on the CPU.
2. gloo for every collective, on GPUs too: what crosses processes is pickled Python objects (all_gather_object of
   texts, token ids, floats), never a tensor a GPU holds; NCCL would copy each pickle to a GPU and back. An agent
   sharded over several GPUs would add an NCCL group of its own (docs/MULTI_GPU.md).
3. Rank 0 writes the run's shared files (config, metrics, transcripts, irt.json, results, plot, the checkpoint's
   state.pt and checksums); each rank writes what is its agent's (checkpoint/agent{i}.pt, final/agent{i}/, its
   evaluation files). Ranks > 0 print nothing to the console (the gathered metrics are rank 0's too); their stdout
   and stderr go to RUN/rank{r}.log.
4. A rank that raises sends its error to the others at the next exchange; a rank that dies (killed, out of memory,
   a lost node) makes the others' next exchange fail at once (gloo sees the closed connection) or after
   `--ddp_timeout` seconds (HF Trainer's name and default, 1800): each survivor then stops with one line naming the
   lost rank. The run resumes from its last checkpoint with the same number of ranks.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
import sys

import torch
import torch.distributed as dist


class RankError(Exception):
    """Another rank failed or was lost; the message is one line naming it. (Not a RuntimeError: ilr.py reads a
    RuntimeError during a save as a write fault.)"""


def world_size() -> int:
    """Processes of this run: torchrun's WORLD_SIZE (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    """True inside a run of several ranks (after `start`)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (torchrun's RANK, also before `start`); 0 without torchrun."""
    return dist.get_rank() if active() else int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's index on its node: the CUDA device it uses (torchrun's LOCAL_RANK)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def owns(i: int) -> bool:
    """Does this process hold agent i? All of them in one process; agent i in rank i (choice 1)."""
    return not active() or i == rank()


_peers: list[tuple[str, int]] = []          # (host, pid) of every rank, for naming a lost one


def start(timeout_s: float) -> None:
    """Join torchrun's process group if there is one (WORLD_SIZE > 1); nothing otherwise. (That the world size is
    the number of agents, choice 1, ilr.check_config checks before anything loads.)"""
    if world_size() == 1 or active():
        return
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))   # choice 2
    _peers[:] = gather_all((socket.gethostname(), os.getpid()))
    signal.signal(signal.SIGTERM, _on_sigterm)   # torchrun stops the other ranks with SIGTERM when one fails


def _on_sigterm(signum, frame):
    raise RankError(f"rank {rank()}: stopped by torchrun (SIGTERM: another rank failed, or Ctrl-C); "
                    f"the last checkpoint is kept: resume with the same torchrun command and --resume RUN")


def device(picked: torch.device) -> torch.device:
    """The device of this rank's agent: cuda:<LOCAL_RANK> when the run's device is CUDA (choice 1)."""
    if not active() or picked.type != "cuda":
        return picked
    if local_rank() >= torch.cuda.device_count():
        raise RankError(f"rank {rank()} has local rank {local_rank()} but this node has "
                        f"{torch.cuda.device_count()} GPU(s): --nproc_per_node must be at most that")
    torch.cuda.set_device(local_rank())
    return torch.device("cuda", local_rank())


@contextlib.contextmanager
def own_save(model):
    """transformers' save_pretrained writes a model's weights only on rank 0 (it takes the ranks for copies of one
    model, as in data-parallel training); here each rank holds another agent, so each writes its own."""
    patch = active() and hasattr(type(model), "should_save_on_this_rank")   # a PEFT AgentView saves by itself
    if patch:
        model.should_save_on_this_rank = lambda is_main_process: is_main_process
    try:
        yield model
    finally:
        if patch:
            del model.should_save_on_this_rank


class Elsewhere:
    """The model of an agent another rank holds: nothing to run here; its name is shown in the transcripts."""

    def __init__(self, holder: int, name_or_path_ilr: str | None):
        self.holder, self.name_or_path_ilr = holder, name_or_path_ilr

    def __repr__(self):
        return f"Elsewhere(rank {self.holder}: {self.name_or_path_ilr})"


def stop() -> None:
    if active():
        dist.destroy_process_group()


def describe() -> str:
    """'2 ranks: rank 0 pid 123 on host, rank 1 pid 124 on host' (the line tests read the pids from)."""
    return f"{len(_peers)} ranks: " + ", ".join(f"rank {r} pid {pid} on {host}" for r, (host, pid) in
                                                enumerate(_peers))


def quiet(log_path) -> None:
    """Ranks > 0: stdout and stderr to `log_path` (choice 3); rank 0 keeps the console."""
    if active() and not is_main():
        log = open(log_path, "a", buffering=1)
        sys.stdout = sys.stderr = log


# ----------------------------------------------------------------------------------------------------------
# The exchanges: every rank calls them at the same point of the step
# ----------------------------------------------------------------------------------------------------------

def lost_rank_message(error: Exception) -> str:
    """One line naming the rank(s) that no longer answer: a peer on this host whose pid is gone, else all peers."""
    me = socket.gethostname()
    gone = [r for r, (host, pid) in enumerate(_peers) if r != rank() and host == me and not _alive(pid)]
    who = (", ".join(f"rank {r} (pid {_peers[r][1]})" for r in gone) + (" is" if len(gone) == 1 else " are")
           if gone else "another rank (on another node, or hung) is")
    return (f"rank {rank()}: {who} lost ({one_line(error, 120)}); stopping; the last checkpoint is kept: resume "
            f"with the same torchrun command and --resume RUN")


def one_line(error: BaseException, limit: int) -> str:
    """'Type: first line of the message', without gloo's '[path/to/file.cc:534] ' prefix, at most `limit` chars."""
    text = str(error).strip().splitlines()
    first = text[0].split("] ", 1)[-1] if text and text[0].startswith("[") else text[0] if text else ""
    return f"{type(error).__name__}: {first[:limit]}" if first else type(error).__name__


def _alive(pid: int) -> bool:
    """Is process `pid` (on this host) still running? A killed rank stays a zombie until torchrun reaps it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:         # Linux: state Z (zombie) or X (dead) after the name
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def gather_all(obj) -> list:
    """all_gather_object: [world] objects, rank r's at position r; a failed exchange is one RankError line."""
    out = [None] * dist.get_world_size()
    try:
        dist.all_gather_object(out, obj)
    except Exception as e:                                # gloo: a closed connection, or the timeout
        raise RankError(lost_rank_message(e)) from None
    return out


class _Failed:
    """What a rank sends instead of its result when its own work raised (choice 4)."""

    def __init__(self, error: BaseException):
        self.rank, self.text = rank(), one_line(error, 200)


def _share(mine):
    """Gather `mine` from every rank; if any rank failed, every rank raises (its own error on the failed rank)."""
    everyone = gather_all(mine)
    failed = [x for x in everyone if isinstance(x, _Failed)]
    if failed and not isinstance(mine, _Failed):
        raise RankError("; ".join(f"rank {f.rank} failed ({f.text}; its log: RUN/rank{f.rank}.log)"
                                  if f.rank else f"rank 0 failed ({f.text})" for f in failed))
    return everyone


def each_agent(num_agents: int, fn) -> list:
    """[fn(0), ..., fn(M-1)]: in one process a plain loop; with ranks, each rank computes fn(i) for the agent it
    holds and every rank gets all M results, in agent order (the texts, grades and updates of train_step)."""
    if not active():
        return [fn(i) for i in range(num_agents)]
    mine = _attempt(lambda: {i: fn(i) for i in range(num_agents) if owns(i)})
    merged = {}
    for part in _share(mine):
        merged.update(part)
    return [merged[i] for i in range(num_agents)]


def together(fn):
    """fn() on every rank (each its own work: load its agent, write its files); if it raises on any rank, every
    rank stops (RankError naming it; the failed rank raises its own error)."""
    if not active():
        return fn()
    result = _attempt(fn)
    _share(None)
    return result


def _attempt(fn):
    """fn(); if it raises, the other ranks hear of it at this exchange (choice 4), and this rank raises it."""
    try:
        return fn()
    except Exception as e:
        _share(_Failed(e))
        raise


def on_main(fn):
    """fn() on rank 0 only (a write to the run directory); every rank returns its result or raises its error."""
    if not active():
        return fn()
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except Exception as e:
            error = e
    shared = gather_all((result, error) if is_main() else None)[0]
    if shared[1] is not None:
        raise shared[1]
    return shared[0]


def any_rank(flag: bool) -> bool:
    """True on every rank if it is True on any (Ctrl-C reaches the ranks at slightly different times)."""
    return any(_share(bool(flag))) if active() else bool(flag)


def barrier() -> None:
    """Wait until every rank is here (an exchange of nothing, with the same error handling)."""
    if active():
        _share(None)
