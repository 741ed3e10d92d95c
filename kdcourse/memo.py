"""A memo of finished trainings, opt-in with ``KDCOURSE_TRAIN_MEMO=1``: the same call, the same result.

A training run is a function of what goes into it: the initial weights, the data, the teacher,
the loss terms (their code too), the settings, the seed, the package's code and the thread count.
:func:`fingerprint` hashes all of it; when a run with that fingerprint finished before, the memo
puts back what it left: the student's final weights, those of the terms' modules (regressors),
the :class:`~kdcourse.distill.History` and the random-number generators' states at its end, so
the cells after it compute exactly what they would have. Anything it cannot hash (an object of a
class it does not know, a generator it cannot read) makes it step aside: the run trains as usual.

What it is for: the unsolved lessons in CI (``tests/unsolved``) rerun the trainings the solution
notebooks ran a minute before, with the same package reference the fallback put in place, and a
class that reruns a lesson. It is off by default: a learner who edits a loss sees it train again
anyway (the code is in the fingerprint), but off there is nothing to trust.

``KDCOURSE_TRAIN_MEMO_LOG=FILE`` appends one line per run to ``FILE``: ``hit``, ``miss`` or why it
was not memoised.

Files: ``<cache>/train-memo/<fingerprint>.pt`` (``torch.save``, read with ``weights_only=True``)
beside ``<fingerprint>.sha256``; written atomically; an entry that does not match its SHA-256 or
does not load is reported with a warning and trained again.
"""

from __future__ import annotations

import dataclasses
import dis
import functools
import hashlib
import io
import os
import random
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import config

__all__ = ["enabled", "key_for", "fingerprint", "Unfingerprintable", "load", "store", "package_hash"]

# Code outside the course whose behaviour its version fixes: named, not read.
_LIBRARIES = ("torch", "numpy", "math", "builtins", "functools", "operator", "torchvision", "scipy", "sklearn")


class Unfingerprintable(TypeError):
    """An input the memo cannot hash: the run is not memoised."""


def enabled() -> bool:
    """Whether ``KDCOURSE_TRAIN_MEMO`` is set to ``1`` (and no process group spans several processes)."""
    if os.environ.get("KDCOURSE_TRAIN_MEMO", "0").strip() != "1":
        return False
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def memo_dir() -> Path:
    path = config.cache_dir() / "train-memo"
    path.mkdir(parents=True, exist_ok=True)
    return path


@functools.lru_cache(maxsize=1)
def package_hash() -> str:
    """SHA-256 over the source of every module of the package (any edit changes every fingerprint)."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def library_versions() -> tuple[tuple[str, str], ...]:
    """The installed versions of the libraries in :data:`_LIBRARIES` the key names but does not read
    (torch, NumPy, torchvision, SciPy, scikit-learn); ``"-"`` for one that is not installed."""
    from importlib import metadata

    versions = []
    for dist in ("torch", "numpy", "torchvision", "scipy", "scikit-learn"):
        try:
            versions.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            versions.append((dist, "-"))
    return tuple(versions)


def fingerprint(*parts: Any) -> str:
    """SHA-256 of ``parts`` and of the environment a run depends on; raises :class:`Unfingerprintable`."""
    digest = hashlib.sha256()
    _Hasher(digest).add(("kdcourse", package_hash(), torch.__version__, np.__version__, library_versions(),
                         torch.get_num_threads(), parts))
    return digest.hexdigest()


def key_for(*parts: Any) -> str | None:
    """:func:`fingerprint` when the memo is :func:`enabled` and can hash ``parts``, else ``None`` (no memo)."""
    if not enabled():
        return None
    try:
        return fingerprint(*parts)
    except Unfingerprintable as err:
        _log(f"not memoised: {err}")
        return None


def _log(line: str) -> None:
    """One line to the file ``KDCOURSE_TRAIN_MEMO_LOG`` names, if any (which runs were put back, and why not)."""
    path = os.environ.get("KDCOURSE_TRAIN_MEMO_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{os.getpid()} {line}\n")


class _Hasher:
    def __init__(self, digest):
        self.digest = digest
        self.seen: dict[int, int] = {}  # id -> order of first visit (cycles and shared objects)
        self.keep: list[Any] = []  # keeps visited objects alive, so their ids stay unique

    def put(self, *tokens: Any) -> None:
        for token in tokens:
            data = token if isinstance(token, bytes) else repr(token).encode()
            self.digest.update(len(data).to_bytes(8, "little"))
            self.digest.update(data)

    def add(self, obj: Any) -> None:  # noqa: C901 - one branch per kind of input, in one place
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, torch.dtype, torch.device)):
            self.put(type(obj).__name__, obj)
            return
        if isinstance(obj, (types.ModuleType, type(Ellipsis))):
            self.put("module", getattr(obj, "__name__", repr(obj)))
            return
        key = id(obj)
        if key in self.seen:
            self.put("again", self.seen[key])
            return
        self.seen[key] = len(self.seen)
        self.keep.append(obj)
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            self.put("tensor", t.dtype, tuple(t.shape), t.requires_grad)
            self.put(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(obj, np.ndarray):
            self.put("ndarray", obj.dtype.str, obj.shape, np.ascontiguousarray(obj).tobytes())
        elif isinstance(obj, np.generic):
            self.put("npscalar", obj.dtype.str, obj.item())
        elif isinstance(obj, nn.Module):
            self.add_class(type(obj))
            self.put("module-repr", repr(obj), [m.training for m in obj.modules()])
            self.add(dict(obj.state_dict(keep_vars=False)))
            self.add([p.requires_grad for p in obj.parameters()])
            self.add({k: v for k, v in vars(obj).items() if not k.startswith("_") and k != "training"})
        elif isinstance(obj, torch.utils.data.TensorDataset):
            self.put("TensorDataset")
            self.add(list(obj.tensors))
        elif isinstance(obj, torch.Generator):
            self.put("generator")
            self.add(obj.get_state())
        elif isinstance(obj, (list, tuple)):
            self.put(type(obj).__name__, len(obj))
            for item in obj:
                self.add(item)
        elif isinstance(obj, (set, frozenset)):
            self.put(type(obj).__name__, sorted(repr(item) for item in obj))
        elif isinstance(obj, dict):
            self.put("dict", len(obj))
            for k in sorted(obj, key=repr):
                self.add(k)
                self.add(obj[k])
        elif isinstance(obj, functools.partial):
            self.put("partial")
            self.add((obj.func, obj.args, obj.keywords))
        elif isinstance(obj, types.MethodType):
            self.put("method")
            self.add((obj.__func__, obj.__self__))
        elif isinstance(obj, types.FunctionType):
            self.add_function(obj)
        elif isinstance(obj, type):
            self.add_class(obj)
        elif isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType)) or callable(obj) and _is_library(obj):
            self.put("named", getattr(obj, "__module__", None), getattr(obj, "__qualname__", repr(obj)))
        elif dataclasses.is_dataclass(obj):
            self.add_class(type(obj))
            for f in dataclasses.fields(obj):
                self.put(f.name)
                self.add(getattr(obj, f.name))
        else:
            raise Unfingerprintable(f"the training memo cannot hash a {type(obj).__module__}.{type(obj).__qualname__}")

    def add_class(self, cls: type) -> None:
        self.put("class", cls.__module__, cls.__qualname__)
        if not _is_fixed(cls.__module__):  # a class written in a notebook: its methods' code counts
            for name, value in sorted(vars(cls).items()):
                if isinstance(value, (types.FunctionType, staticmethod, classmethod, property)):
                    self.put(name)
                    self.add(getattr(value, "__func__", getattr(value, "fget", value)))

    def add_function(self, fn: types.FunctionType) -> None:
        # the package's own code is pinned by package_hash, a library's by its version; what a call made
        # of it (a closure such as kd_term's lambda over T, its defaults) counts like a notebook's
        fixed = _is_fixed(fn.__module__)
        self.put("function", fn.__module__ if fixed else "", fn.__qualname__)
        self.add((fn.__defaults__, fn.__kwdefaults__))
        self.add([cell.cell_contents for cell in (fn.__closure__ or ()) if _cell_filled(cell)])
        if fixed:
            return
        # a notebook's function: its code, and the globals it reads
        self.add_code(fn.__code__)
        for name in _global_names(fn.__code__):
            if name in fn.__globals__:
                self.put("global", name)
                self.add(fn.__globals__[name])

    def add_code(self, code: types.CodeType) -> None:
        self.put("code", code.co_code, code.co_names, code.co_varnames, code.co_freevars, code.co_argcount)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                self.add_code(const)
            else:
                self.add(const)


def _is_fixed(module: str | None) -> bool:
    """Code the package hash or a library version pins down (not a notebook's ``__main__``)."""
    root = (module or "").split(".")[0]
    return root == "kdcourse" or root in _LIBRARIES


def _is_library(obj: Any) -> bool:
    return _is_fixed(getattr(obj, "__module__", None) or getattr(type(obj), "__module__", None))


def _cell_filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _global_names(code: types.CodeType) -> list[str]:
    """The global names ``code`` (and the code nested in it) reads: ``LOAD_GLOBAL`` / ``LOAD_NAME``, not the
    attribute names ``co_names`` also holds (``losses.kd_loss`` reads the global ``losses``, not ``kd_loss``)."""
    names = {ins.argval for ins in dis.get_instructions(code) if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(_global_names(const))
    return sorted(n for n in names if isinstance(n, str))


# ------------------------------------------------------------------ the entries


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_rest": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": _to_lists(random.getstate())}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, pos, has_gauss, cached = state["numpy_rest"]
    np.random.set_state((name, state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_to_tuples(state["python"]))


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value


def store(key: str, modules: dict[str, nn.Module | None], record: dict) -> None:
    """Save the final state of ``modules`` (by name; ``None`` skipped), ``record`` (plain data: lists,
    dicts, numbers, strings, tensors) and the random generators' states under ``key``."""
    payload = {"modules": {name: {k: v.detach().cpu() for k, v in m.state_dict().items()}
                           for name, m in modules.items() if m is not None},
               "record": record, "rng": _rng_state()}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    path = memo_dir() / f"{key}.pt"
    for target, content in ((path, data), (path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())):
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        try:
            tmp.write_bytes(content)
            os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file
        finally:
            tmp.unlink(missing_ok=True)


def load(key: str, modules: dict[str, nn.Module | None]) -> dict | None:
    """Put back what :func:`store` saved under ``key`` into ``modules`` and the random generators; return
    its ``record``, or ``None`` when there is no such entry (or it is corrupt: then a warning)."""
    path = memo_dir() / f"{key}.pt"
    if not path.exists():
        _log(f"miss {key[:16]}")
        return None
    try:
        data = path.read_bytes()
        expected = path.with_suffix(".sha256").read_text().strip()
        if hashlib.sha256(data).hexdigest() != expected:
            raise ValueError("its SHA-256 does not match the one written beside it")
        payload = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        wanted = {name for name, m in modules.items() if m is not None}
        if set(payload["modules"]) != wanted:
            raise ValueError(f"it holds {sorted(payload['modules'])}, this run trains {sorted(wanted)}")
        for name in wanted:
            modules[name].load_state_dict(payload["modules"][name])
        _set_rng_state(payload["rng"])
        _log(f"hit {key[:16]}")
        return payload["record"]
    except Exception as err:  # truncated, foreign, tampered with: train again and overwrite
        warnings.warn(f"the training memo entry {path} could not be used ({type(err).__name__}: {err}); "
                      "training again", RuntimeWarning, stacklevel=3)
        return None
