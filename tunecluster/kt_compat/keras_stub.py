"""A tiny stand-in for the `keras` package, so the chief can use Keras Tuner's oracles without
importing TensorFlow.

The chief only runs an oracle: hyperparameters, trials, scoring and JSON state. Keras Tuner reaches
Keras for two things on that path: its version (to pick the multi-backend code) and
`keras.utils.legacy.(de)serialize_keras_object` for hyperparameter configs, which we implement here
in the same `{"class_name", "config"}` format. Everything else Keras Tuner touches at import time
(layer classes for its applications) gets inert placeholders that fail loudly if ever called.
Importing TensorFlow costs ~5 CPU-seconds and ~500 MB per process; on a small machine the chief
would otherwise steal that from the workers while they start.

`install()` must run before anything imports `keras_tuner`; it refuses if real Keras is already
loaded (then nothing is needed). A run_trial worker uses the shim too, and `seal()`s it once
Keras Tuner is imported: a later use of a placeholder fails with a message.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

from tunecluster.core.errors import UsageError

_EXPORTED = [
    "layers", "models", "optimizers", "callbacks", "losses", "metrics", "backend", "Model",
    "Sequential", "Input", "ops", "random", "applications", "initializers", "regularizers",
    "activations", "saving", "src", "engine",
]


_sealed: list[str] = []  # the message once `seal()` was called


class SealedKeras(UsageError):
    """A placeholder was used after `seal()`: the user's code reached for Keras in a worker
    started without it (a usage error: every trial would fail the same way)."""


def _refuse(name: str):
    if _sealed:
        raise SealedKeras(f"keras.{name} is tunecluster's stand-in for Keras: {_sealed[0]}")


class _PlaceholderMeta(type):
    """Placeholder classes: attribute access gives more placeholders; decorating is a no-op."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        _refuse(f"{cls.__name__}.{name}")
        return _placeholder(name)

    def __call__(cls, *args, **kwargs):
        _refuse(cls.__name__)
        if len(args) == 1 and not kwargs and callable(args[0]):
            return args[0]  # used as a decorator
        return cls


def _placeholder(name: str) -> type:
    return _PlaceholderMeta(name, (), {"__module__": "keras (tunecluster shim)"})


class _Legacy:
    @staticmethod
    def serialize_keras_object(obj):
        return {"class_name": obj.__class__.__name__, "config": obj.get_config()}

    @staticmethod
    def deserialize_keras_object(config, custom_objects=None, module_objects=None):
        objects = dict(module_objects or {})
        objects.update(custom_objects or {})
        return objects[config["class_name"]].from_config(config["config"])


class _Utils:
    legacy = _Legacy


class _Config:
    @staticmethod
    def backend() -> str:
        return "numpy"  # makes keras_tuner.backend.io use plain `os`/`open`, not tf.io.gfile


class _ShimModule(types.ModuleType):
    __path__: list = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        _refuse(name)
        return _placeholder(name)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "keras" or fullname.startswith("keras."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _ShimModule(spec.name)
        for name in _EXPORTED:
            setattr(module, name, _placeholder(name))
        module.utils = _Utils
        module.config = _Config
        module.__all__ = list(_EXPORTED) + ["utils", "config"]
        module.version = lambda: "3.0.0+tunecluster-shim"
        module.__version__ = "3.0.0+tunecluster-shim"
        return module

    def exec_module(self, module):
        return None


def install() -> bool:
    """Route `import keras` to the shim. Returns False (and does nothing) if Keras is loaded."""
    if "keras" in sys.modules or "keras_tuner" in sys.modules:
        return False
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    return True


def installed() -> bool:
    return any(isinstance(f, _Finder) for f in sys.meta_path)


def seal(message: str) -> None:
    """From now on, using any placeholder (calling it, or reaching for an attribute it does not
    have) raises SealedKeras (a UsageError) with `message`: in a run_trial worker, whose user code could
    otherwise reach the stand-in instead of Keras and silently get placeholders back."""
    if not _sealed:
        _sealed.append(message)
