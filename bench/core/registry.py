"""One registry type for everything the harness names (datasets, models, strategies): it refuses a name or
alias twice, and answers an unknown name with the known ones and the closest match."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import re
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from bench.core.errors import UserError, regular_file

T = TypeVar("T")

# Names become parts of job keys (strategy/seed), file names and table columns: no separators, no spaces.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def unknown_name(kind: str, name: str, known: Sequence[str]) -> UserError:
    by_case = {k.lower(): k for k in known}  # 'ENTROPY' or 'Core-Set' is the name in other letters
    close = [by_case[name.lower()]] if name.lower() in by_case else difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UserError(f"Unknown {kind} {name!r}{hint}: choose one of {', '.join(known)}.")


class Registry(Generic[T]):
    def __init__(self, kind: str, describe: Callable[[T], str] = repr) -> None:
        self.kind = kind
        self._describe = describe  # names the holder of a taken name in the refusal
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}  # alias -> name

    def add(self, name: str, item: T, aliases: Sequence[str] = ()) -> T:
        for key in (name, *aliases):
            if not isinstance(key, str) or not NAME.fullmatch(key):
                raise UserError(f"{self.kind.capitalize()} name {key!r} is refused: use letters, digits and "
                                "_ . + - only, starting with a letter or digit.")
            if key in self._items or key in self._aliases:
                holder = self._describe(self._items[self.canonical(key)])
                raise UserError(f"{self.kind.capitalize()} name {key!r} is taken by {holder}; give the new "
                                f"{self.kind} another name.")
        self._items[name] = item
        self._aliases.update({alias: name for alias in aliases})
        return item

    def register(self, name: str, aliases: Sequence[str] = ()) -> Callable[[T], T]:
        """Decorator form of add()."""
        return lambda item: self.add(name, item, aliases)

    def names(self) -> list[str]:
        return sorted(self._items)

    def aliases_of(self, name: str) -> list[str]:
        return sorted(alias for alias, target in self._aliases.items() if target == name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def canonical(self, name: str, also: Sequence[str] = ()) -> str:
        """The registered name for a name or alias; `also` lists further accepted forms for the error message."""
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise unknown_name(self.kind, name, [*self.names(), *sorted(self._aliases), *also])

    def get(self, name: str, also: Sequence[str] = ()) -> T:
        return self._items[self.canonical(name, also)]

    @contextlib.contextmanager
    def scoped(self) -> Iterator[Registry[T]]:
        """Registrations made inside the block are forgotten when it ends (tests register throwaway items)."""
        items, aliases = dict(self._items), dict(self._aliases)
        try:
            yield self
        finally:
            self._items, self._aliases = items, aliases


# What each imported user file ran: {resolved path: {source file: sha256}}, the file itself (hashed from the very
# bytes executed) and the helper modules it imported from outside the interpreter's and the harness's folders.
IMPORTED_CODE: dict[str, dict[str, str]] = {}
_HARNESS = Path(__file__).resolve().parents[2]
_LIBRARIES = {Path(p).resolve() for p in {sys.prefix, sys.base_prefix, *sysconfig.get_paths().values()}}


def code_digest(path: Path | str) -> str:
    """The digest of what importing `path` ran: its own sha256 when it imported no helper (so a folder made before
    helpers were hashed keeps its identity), else the sha256 of every file's path-free digest in order."""
    files = IMPORTED_CODE[str(Path(path).resolve())]
    if len(files) == 1:
        return next(iter(files.values()))
    return hashlib.sha256("".join(files[k] for k in sorted(files)).encode()).hexdigest()


def _user_helper(module: object) -> Path | None:
    """The source file of a module a user file imported, when it is the user's own (not a library, not ours)."""
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        return None
    resolved = Path(file).resolve()
    if resolved.is_relative_to(_HARNESS) or any(resolved.is_relative_to(lib) for lib in _LIBRARIES):
        return None
    return resolved


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content, read in blocks."""
    digest = hashlib.sha256()
    with open(regular_file(path, "a file to hash"), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_user_file(path: Path, registry: Registry, none_added: str) -> list[str]:
    """Import a user's .py file that registers items into `registry`; returns the names it added. Every failure
    is one line; `none_added` finishes the line for a file that registers nothing. What ran is recorded in
    IMPORTED_CODE (see code_digest)."""
    what = registry.kind.capitalize()
    regular_file(path, f"a {registry.kind} file (.py)")
    if path.is_dir():
        raise UserError(f"{what} file {str(path)!r} is a folder: give the path of a .py file.")
    if not path.is_file():
        raise UserError(f"{what} file {str(path)!r} does not exist: give the path of a .py file.")
    before = set(registry.names())
    module_name = f"al_bench_user_{registry.kind}_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{what} file {path} cannot be imported: it must be a Python source file (.py).")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    modules_before = set(sys.modules)
    try:
        source = path.read_bytes()  # hashed and run from the same bytes: an edit in between cannot slip through
        code = compile(source, str(path), "exec")
        exec(code, module.__dict__)  # noqa: S102 - the user's own file, named on the command line
    except UserError:
        raise
    except SyntaxError as err:
        raise UserError(f"{what} file {path} has a syntax error at line {err.lineno}: {err.msg}.") from None
    except Exception as err:
        raise UserError(f"{what} file {path} failed to import ({type(err).__name__}: {err}).") from None
    except SystemExit as stop:  # sys.exit() at import: one line, never the process's own exit
        raise UserError(f"{what} file {path} called sys.exit({stop.code!r}) while being imported: a strategy or "
                        "model file must only define and register.") from None
    added = sorted(set(registry.names()) - before)
    if not added:
        raise UserError(f"{what} file {path} {none_added}")
    # helpers: the user's modules this import loaded, and those it uses that were loaded before (import x, from x
    # import f): either way their code shapes what the file's items do
    used = [sys.modules[name] for name in set(sys.modules) - modules_before]
    used += [v if isinstance(v, types.ModuleType) else sys.modules.get(getattr(v, "__module__", "") or "")
             for v in list(module.__dict__.values())]
    helpers = {h for m in used if m is not None and m is not module and (h := _user_helper(m))} - {path.resolve()}
    IMPORTED_CODE[str(path.resolve())] = {str(path.resolve()): hashlib.sha256(source).hexdigest(),
                                          **{str(h): file_sha256(h) for h in sorted(helpers)}}
    return added
