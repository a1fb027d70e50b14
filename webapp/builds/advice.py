"""Dockerfile advice: what in a Dockerfile costs cache hits or image size, and the lines that fix it.

Pure: a Dockerfile's text (and what is known of its build context) -> a list of :class:`Advice`, ordered by
line. Nothing is read from disk and nothing is run. The rules, each with a stable id:

* ``copy-before-install`` -- the source tree (``COPY . .``, or a directory that holds the dependency
  manifest) is copied before a dependency install (pip, poetry, pipenv, uv, npm, yarn, pnpm, go mod, cargo,
  bundler, composer) in the same stage, and no earlier COPY of that stage copied the manifest: every change
  to any file re-runs the install. The suggestion is the reordered block. Never given when a manifest of
  the install's ecosystem was copied earlier in the stage.
* ``apt-update-alone`` -- ``RUN apt-get update`` with no install in the same RUN: its layer is cached and
  goes stale. The suggestion merges it with the install that follows.
* ``add-instead-of-copy`` -- ``ADD`` of local files that are neither a URL nor a tar archive.
* ``no-dockerignore`` -- no ``.dockerignore`` and a large context (200 files, 10 MiB) or one holding
  ``.git`` or ``node_modules``. The suggestion is a ``.dockerignore``.
* ``apt-no-clean`` -- ``apt-get update`` and an install in one RUN of the final image that leaves the
  package lists (``/var/lib/apt/lists``) in the layer.
* ``pip-no-cache-dir`` -- ``pip install`` in the final image without ``--no-cache-dir``: the download cache
  stays in the layer.
* ``latest-base`` -- ``FROM`` an image with no tag or the ``latest`` tag.

The size rules (``apt-no-clean``, ``pip-no-cache-dir``) only look at the stages the final image is built
on: a builder stage's layers do not ship. Everything else applies per stage; a COPY in another stage never
counts. When something cannot be worked out (a path made of an unknown variable, a shell construct that
cannot be split) the rule stays silent: advice is never given on a guess.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from webapp.builds.buildkit import _HEREDOC_RE, parse_dockerfile
from webapp.builds.dockerignore import DockerIgnore, DockerIgnoreError

__all__ = ["Advice", "advise", "CONTEXT_FILES_LIMIT", "CONTEXT_BYTES_LIMIT"]

#: A context this large without a .dockerignore gets ``no-dockerignore``.
CONTEXT_FILES_LIMIT = 200
CONTEXT_BYTES_LIMIT = 10 * 1024 * 1024

_RULE_ORDER = (
    "no-dockerignore",
    "latest-base",
    "copy-before-install",
    "apt-update-alone",
    "apt-no-clean",
    "pip-no-cache-dir",
    "add-instead-of-copy",
)


@dataclass(frozen=True)
class Advice:
    line: int  # 1-based line in the Dockerfile where the instruction starts
    rule: str  # stable id, see the module docstring
    message: str  # why it costs cache or size, for a person
    suggestion: str  # the changed Dockerfile lines (for no-dockerignore: a .dockerignore)

    def to_dict(self) -> dict[str, int | str]:
        return {"line": self.line, "rule": self.rule, "message": self.message, "suggestion": self.suggestion}


def advise(
    dockerfile_text: str,
    *,
    context_files: int | None = None,
    context_bytes: int | None = None,
    has_dockerignore: bool | None = None,
    context_paths: Iterable[str] | None = None,
) -> list[Advice]:
    """A Dockerfile (and what is known of its context) -> advice, ordered by line."""
    context = _Context(context_paths) if context_paths is not None else None
    instructions = _instructions(dockerfile_text)
    stages = _build_stages(instructions)
    found: list[Advice] = []
    found += _no_dockerignore(stages, context_files, context_bytes, has_dockerignore, context)
    final_chain = _final_chain(stages)
    for stage in stages:
        found += _latest_base(stage)
        found += _copy_before_install(stage, context)
        found += _apt_update_alone(stage)
        if stage.number in final_chain:
            found += _apt_no_clean(stage)
            found += _pip_no_cache_dir(stage)
        found += _add_instead_of_copy(stage, context)
    return sorted(found, key=lambda a: (a.line, _RULE_ORDER.index(a.rule)))


# --------------------------------------------------------------------------------------------------
# Where each instruction is written
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Written:
    """One instruction as the file has it."""

    keyword: str  # upper case, as ``parse_dockerfile`` reads it
    stage: int | None  # stage number from 0; None for ARGs before the first FROM
    first: int  # 1-based line where it starts
    last: int  # 1-based line where it ends (continuations and heredoc bodies included)
    raw: tuple[str, ...]  # the file's lines first..last, as written
    pretty: str  # continuation pieces stripped and joined with one space (heredoc bodies left out)
    heredocs: tuple[str, ...]  # the bodies of its heredocs, in order
    escape: str  # the file's escape character


def _locate(text: str) -> list[_Written]:
    """Each instruction and its place in the file, from ``parse_dockerfile``'s own walk of the lines.

    Line numbers count ``\\n``, ``\\r\\n`` and ``\\r`` endings as an editor does (not form feeds and the like).
    """
    return [
        _Written(i.keyword, i.stage, i.first_line, i.last_line, i.raw_lines, i.pretty, i.heredocs, i.escape)
        for i in parse_dockerfile(text)
    ]


# --------------------------------------------------------------------------------------------------
# Instructions, stages, and what each instruction sees (working directory, variables)
# --------------------------------------------------------------------------------------------------

#: The image's working directory before any WORKDIR: unknown (the base image may set one). Paths under it
#: compare with each other; against an absolute path they never match.
_BASE = "/<base-workdir>"


@dataclass
class _Instr:
    keyword: str
    stage: int
    written: _Written
    args: str  # the pretty text after the keyword
    workdir: str = _BASE  # before this instruction
    env: dict[str, str | None] = field(default_factory=dict)  # ENV and ARG values before it (None: unknown)
    global_args: dict[str, str | None] = field(default_factory=dict)  # the ARGs before the first FROM

    @property
    def line(self) -> int:
        return self.written.first

    @property
    def source(self) -> str:
        return "\n".join(self.written.raw)


@dataclass
class _Stage:
    number: int
    name: str | None
    image: str  # the FROM image as written (variables expanded where known)
    parent: int | None  # the earlier stage it is built FROM
    instructions: list[_Instr]  # the FROM first


def _instructions(text: str) -> list[_Instr]:
    found: list[_Instr] = []
    globals_: dict[str, str | None] = {}
    for where in _locate(text):
        rest = where.pretty.split(None, 1)
        if not rest or rest[0].upper() != where.keyword:  # a keyword split by a continuation: never guess
            return []
        args = rest[1] if len(rest) > 1 else ""
        if where.stage is None:
            if where.keyword == "ARG":
                globals_.update(_arg_values(args, {}))
            continue
        found.append(_Instr(where.keyword, where.stage, where, args, global_args=dict(globals_)))
    return found


def _build_stages(instructions: list[_Instr]) -> list[_Stage]:
    stages: list[_Stage] = []
    globals_: dict[str, str | None] = instructions[0].global_args if instructions else {}
    for instr in instructions:
        if instr.keyword == "FROM":
            words = [w for w in instr.args.split() if not w.startswith("--")]
            image = _expand(words[0], globals_) if words else ""
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            parent = _stage_named(stages, image)
            workdir: str = _BASE
            env: dict[str, str | None] = {}
            if parent is not None:
                last = stages[parent].instructions[-1]
                workdir, env = _after(last)
            stages.append(_Stage(len(stages), name, image, parent, []))
            instr.workdir, instr.env = workdir, env
        elif stages:
            previous = stages[-1].instructions[-1]
            instr.workdir, instr.env = _after(previous)
        if stages:
            stages[-1].instructions.append(instr)
    return stages


def _stage_named(stages: list[_Stage], image: str) -> int | None:
    for stage in stages:
        if stage.name is not None and stage.name.lower() == image.lower():
            return stage.number
    if image.isdigit() and int(image) < len(stages):
        return int(image)
    return None


def _after(instr: _Instr) -> tuple[str, dict[str, str | None]]:
    """The working directory and variables after an instruction."""
    workdir, env = instr.workdir, dict(instr.env)
    if instr.keyword == "WORKDIR":
        workdir = _resolve(workdir, _expand(instr.args.strip(), env))
    elif instr.keyword == "ENV":
        env.update(_env_values(instr.args, env))
    elif instr.keyword == "ARG":
        env.update(_arg_values(instr.args, env, instr.global_args))
    return workdir, env


def _env_values(args: str, env: dict[str, str | None]) -> dict[str, str | None]:
    words = _shell_words(args)
    if words and "=" not in words[0]:  # legacy ``ENV KEY value with spaces``
        return {words[0]: _expand(" ".join(words[1:]), env)}
    values: dict[str, str | None] = {}
    for word in words:
        key, _, value = word.partition("=")
        values[key] = _expand(value, {**env, **values})
    return values


def _arg_values(
    args: str, env: dict[str, str | None], known: dict[str, str | None] | None = None
) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for word in _shell_words(args):
        key, equals, value = word.partition("=")
        if equals:
            values[key] = _expand(value, env)
        elif key in env:  # declared again: keeps its value
            values[key] = env[key]
        else:  # a declaration alone takes the global default, if any (None: unknown, a --build-arg)
            values[key] = (known or {}).get(key)
    return values


_VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def _expand(text: str, env: dict[str, str | None]) -> str:
    """``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR:+word}`` with the known values; unknown ones stay."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        operator, word = match.group(2), match.group(3) or ""
        value = env.get(name)
        if operator in (":-", "-"):
            if name not in env:
                return word
            if value is None:
                return match.group(0)
            return word if operator == ":-" and value == "" else value
        if operator in (":+", "+"):
            if value is None and name in env:
                return match.group(0)
            is_set = name in env and (operator == "+" or value != "")
            return word if is_set else ""
        return value if value is not None else match.group(0)

    return _VAR_RE.sub(substitute, text)


def _resolve(cwd: str, path: str) -> str:
    if path.startswith("/"):
        return posixpath.normpath(path)
    return posixpath.normpath(posixpath.join(cwd, path))


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _known(path: str) -> bool:
    return "$" not in path


def _final_chain(stages: list[_Stage]) -> set[int]:
    chain: set[int] = set()
    current = stages[-1].number if stages else None
    while current is not None and current not in chain:
        chain.add(current)
        current = stages[current].parent
    return chain


# --------------------------------------------------------------------------------------------------
# The build context
# --------------------------------------------------------------------------------------------------


class _Context:
    def __init__(self, paths: Iterable[str]) -> None:
        self.files: set[str] = set()
        self.dirs: set[str] = set()
        for raw in paths:
            path = raw.strip().replace("\\", "/")
            while path.startswith("./"):
                path = path[2:]
            path = path.lstrip("/")
            is_dir = path.endswith("/")
            path = posixpath.normpath(path) if path else ""
            if path in ("", "."):
                continue
            if is_dir:
                self.dirs.add(path)
            else:
                self.files.add(path)
            parent = posixpath.dirname(path)
            while parent:
                self.dirs.add(parent)
                parent = posixpath.dirname(parent)
        self.files -= self.dirs

    def has_file(self, path: str) -> bool:
        return posixpath.normpath(path) in self.files

    def has_dir(self, path: str) -> bool:
        return posixpath.normpath(path) in self.dirs

    def has_component(self, name: str) -> bool:
        return any(name in path.split("/") for path in self.dirs)


def _context_path(source: str) -> str:
    """A COPY source as a context path: ``""`` for the context's root."""
    path = source.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    path = path.strip("/")
    path = posixpath.normpath(path) if path else ""
    return "" if path == "." else path


def _is_root(source: str) -> bool:
    return _context_path(source) in ("", "*", "**")


def _has_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


# --------------------------------------------------------------------------------------------------
# COPY / ADD / RUN arguments
# --------------------------------------------------------------------------------------------------

_FLAG_RE = re.compile(r"--([A-Za-z][A-Za-z0-9-]*)(?:=(\S*))?\s*")


def _flags(args: str) -> tuple[list[tuple[str, str | None, str]], str]:
    """Leading ``--name[=value]`` flags -> [(name, value, as written)] and the rest."""
    flags: list[tuple[str, str | None, str]] = []
    rest = args.lstrip()
    while rest.startswith("--"):
        match = _FLAG_RE.match(rest)
        if match is None:
            break
        flags.append((match.group(1).lower(), match.group(2), match.group(0).strip()))
        rest = rest[match.end() :]
    return flags, rest


@dataclass(frozen=True)
class _CopyArgs:
    flags: tuple[tuple[str, str | None, str], ...]
    sources: tuple[str, ...]
    dest: str
    json_form: bool

    @property
    def from_stage(self) -> bool:
        return any(name == "from" for name, _, _ in self.flags)

    def flag_text(self, keep: Sequence[str] = ("chown", "chmod", "link")) -> str:
        return "".join(written + " " for name, _, written in self.flags if name in keep)


def _copy_args(instr: _Instr) -> _CopyArgs | None:
    flags, rest = _flags(instr.args)
    words: list[str]
    json_form = False
    if rest.startswith("["):
        try:
            loaded = json.loads(rest)
        except ValueError:
            return None
        if not isinstance(loaded, list) or not all(isinstance(w, str) for w in loaded):
            return None
        words, json_form = loaded, True
    else:
        words = rest.split()
    if len(words) < 2:
        return None
    return _CopyArgs(tuple(flags), tuple(words[:-1]), words[-1], json_form)


@dataclass(frozen=True)
class _RunArgs:
    flags: tuple[tuple[str, str | None, str], ...]
    command: str  # the shell command line (exec form: its words joined; heredoc markers kept)
    script: str  # what the shell runs, for reading: the command and any shell heredoc bodies
    parts: tuple[tuple[str, str], ...] | None  # top-level ``&&``/``;`` pieces (text, separator after)
    heredoc: bool
    exec_form: bool = False

    @property
    def flag_text(self) -> str:
        return "".join(written + " " for _, _, written in self.flags)

    def cache_targets(self) -> list[str]:
        targets = []
        for name, value, _ in self.flags:
            if name == "mount" and value and "type=cache" in value:
                for option in value.split(","):
                    key, _, target = option.partition("=")
                    if key in ("target", "dst", "destination"):
                        targets.append(target.rstrip("/"))
        return targets


_SHELLS = {"sh", "bash", "ash", "dash", "zsh", "ksh"}


def _run_args(instr: _Instr) -> _RunArgs:
    flags, rest = _flags(instr.args)
    if rest.startswith("["):
        try:
            loaded = json.loads(rest)
        except ValueError:
            loaded = None
        if isinstance(loaded, list) and all(isinstance(w, str) for w in loaded) and loaded:
            if posixpath.basename(loaded[0]) in _SHELLS and len(loaded) >= 3 and loaded[1] == "-c":
                command = loaded[2]
            else:
                command = shlex.join(loaded)
            return _RunArgs(tuple(flags), command, command, None, False, exec_form=True)
    if instr.written.heredocs:
        line = _HEREDOC_RE.sub(" ", rest).strip()
        words = line.split()
        shell_body = not words or posixpath.basename(words[0]) in _SHELLS
        script = "\n".join(instr.written.heredocs) if shell_body else line
        return _RunArgs(tuple(flags), rest, script, None, True)
    return _RunArgs(tuple(flags), rest, rest, _split_parts(rest), False)


_SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac"}


def _split_parts(command: str) -> tuple[tuple[str, str], ...] | None:
    """A command line -> its top-level ``&&`` / ``;`` pieces, or None where that would break it."""
    parts: list[tuple[str, str]] = []
    depth, quote, start, i = 0, "", 0, 0
    while i < len(command):
        c = command[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c == "\\":
            i += 2
            continue
        elif c in "'\"":
            quote = c
        elif c in "({":
            depth += 1
        elif c in ")}":
            depth -= 1
            if depth < 0:
                return None
        elif depth == 0 and command.startswith("&&", i):
            parts.append((command[start:i].strip(), "&&"))
            i += 2
            start = i
            continue
        elif depth == 0 and c == ";" and not command.startswith(";;", i):
            parts.append((command[start:i].strip(), ";"))
            start = i + 1
        i += 1
    if quote or depth:
        return None
    parts.append((command[start:].strip(), ""))
    if any(not text for text, _ in parts[:-1]):
        return None
    parts = [p for p in parts if p[0]]
    for text, _ in parts:
        words = text.split()
        if not words or words[0] in _SHELL_KEYWORDS or words[0].endswith("()"):
            return None
    return tuple(parts)


def _join_parts(parts: Sequence[tuple[str, str]]) -> str:
    out = ""
    for n, (text, separator) in enumerate(parts):
        out += text
        if n < len(parts) - 1:
            out += "; " if separator == ";" else " && "
    return out


# --------------------------------------------------------------------------------------------------
# Shell commands, read well enough to recognise installs
# --------------------------------------------------------------------------------------------------

_SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;", "|&", "{", "}"}
_PREFIX_WORDS = {"then", "do", "else", "elif", "if", "while", "until", "!", "time", "exec", "nohup", "command"}
_ASSIGNMENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_REDIRECT_RE = re.compile(r"[0-9]*[<>&]+[<>&|-]*")


def _shell_words(text: str, *, punctuation: bool = False) -> list[str]:
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=punctuation)
        lexer.whitespace_split = True
        return list(lexer)
    except ValueError:
        if punctuation:
            return re.findall(r"&&|\|\||[;|&()<>]+|[^\s;|&()<>]+", text)
        return text.split()


def _commands(script: str) -> list[list[str]]:
    """A shell script -> its simple commands' words (redirections, assignments and wrappers dropped)."""
    commands: list[list[str]] = []
    logical = re.sub(r"\\\n", " ", script)
    for line in logical.split("\n"):
        if not line.strip() or line.strip().startswith("#"):
            continue
        current: list[str] = []
        words = _shell_words(line, punctuation=True)
        skip = False
        for n, word in enumerate(words):
            if skip:
                skip = False
                continue
            if word in _SEPARATORS:
                commands.append(current)
                current = []
            elif _REDIRECT_RE.fullmatch(word) and not word.isdigit():
                skip = True
            elif word.isdigit() and n + 1 < len(words) and _REDIRECT_RE.fullmatch(words[n + 1]):
                continue
            else:
                current.append(word)
        commands.append(current)
    return [c for c in (_strip_wrappers(c) for c in commands) if c]


def _strip_wrappers(words: list[str]) -> list[str]:
    i = 0
    while i < len(words):
        word = words[i]
        if word in _PREFIX_WORDS or _ASSIGNMENT_RE.match(word):
            i += 1
        elif word in ("sudo", "env"):
            i += 1
            while i < len(words) and (words[i].startswith("-") or _ASSIGNMENT_RE.match(words[i])):
                i += 1
        else:
            break
    return words[i:]


def _program(words: list[str]) -> tuple[str, list[str]]:
    """A command's program (``pip`` for pip3.11, ``python -m pip``, ``uv pip``) and its arguments."""
    name = posixpath.basename(words[0])
    args = words[1:]
    if re.fullmatch(r"python[0-9.]*", name) and len(args) >= 2 and args[0] == "-m":
        name, args = args[1], args[2:]
    elif name == "php" and args and posixpath.basename(args[0]).startswith("composer"):
        name, args = posixpath.basename(args[0]), args[1:]
    elif name == "uv" and args and args[0] == "pip":
        return "uv-pip", args[1:]
    if re.fullmatch(r"pip[0-9.]*", name):
        name = "pip"
    if name in ("composer.phar", "composer"):
        name = "composer"
    return name, args


def _positional(args: list[str], takes_value: set[str] | frozenset[str]) -> list[str]:
    found = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg in takes_value
        else:
            found.append(arg)
    return found


# --------------------------------------------------------------------------------------------------
# Dependency installs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ecosystem:
    name: str
    primary: str  # the manifest the install reads (relative to where it runs)
    usual: tuple[str, ...]  # what to copy when the context is not known
    companions: tuple[str, ...]  # copied too when the context shows them
    patterns: tuple[str, ...]  # basenames (globs) of files that count as this ecosystem's manifest
    companion_dirs: tuple[str, ...] = ()


_PIP_PATTERNS = (
    "*requirements*.txt",
    "*requirements*.in",
    "constraints*.txt",
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
)
_NODE = ("package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml")

_ECOSYSTEMS = {
    e.name: e
    for e in (
        _Ecosystem("pip", "requirements.txt", (), (), _PIP_PATTERNS),
        _Ecosystem(
            "poetry",
            "pyproject.toml",
            ("pyproject.toml", "poetry.lock"),
            ("poetry.lock", "poetry.toml"),
            ("pyproject.toml", "poetry.lock"),
        ),
        _Ecosystem("pipenv", "Pipfile", ("Pipfile", "Pipfile.lock"), ("Pipfile.lock",), ("Pipfile", "Pipfile.lock")),
        _Ecosystem(
            "uv",
            "pyproject.toml",
            ("pyproject.toml", "uv.lock"),
            ("uv.lock", ".python-version"),
            ("pyproject.toml", "uv.lock"),
        ),
        _Ecosystem(
            "npm",
            "package.json",
            ("package*.json",),
            ("package-lock.json", "npm-shrinkwrap.json", ".npmrc"),
            _NODE,
        ),
        _Ecosystem(
            "yarn",
            "package.json",
            ("package.json", "yarn.lock"),
            ("yarn.lock", ".yarnrc.yml", ".yarnrc", ".npmrc"),
            _NODE,
            (".yarn/releases", ".yarn/plugins"),
        ),
        _Ecosystem(
            "pnpm",
            "package.json",
            ("package.json", "pnpm-lock.yaml"),
            ("pnpm-lock.yaml", "pnpm-workspace.yaml", ".npmrc"),
            _NODE,
        ),
        _Ecosystem(
            "pnpm-fetch",
            "pnpm-lock.yaml",
            ("pnpm-lock.yaml",),
            ("pnpm-workspace.yaml", ".npmrc"),
            _NODE,
        ),
        _Ecosystem("go", "go.mod", ("go.mod", "go.sum"), ("go.sum",), ("go.mod", "go.sum")),
        _Ecosystem(
            "cargo",
            "Cargo.toml",
            ("Cargo.toml", "Cargo.lock"),
            ("Cargo.lock",),
            ("Cargo.toml", "Cargo.lock", "recipe.json"),
        ),
        _Ecosystem(
            "bundler",
            "Gemfile",
            ("Gemfile", "Gemfile.lock"),
            ("Gemfile.lock",),
            ("Gemfile", "Gemfile.lock", "*.gemspec"),
        ),
        _Ecosystem(
            "composer",
            "composer.json",
            ("composer.json", "composer.lock"),
            ("composer.lock",),
            ("composer.json", "composer.lock"),
        ),
    )
}


@dataclass(frozen=True)
class _Install:
    """One dependency install found in a RUN."""

    ecosystem: _Ecosystem
    words: tuple[str, ...]  # the command, as read
    cwd: str  # where it runs (image path)
    primary: str  # image path of the manifest it reads
    files: tuple[str, ...]  # image paths of the manifests to copy first (for pip: the requirement files)
    dirs: tuple[str, ...]  # image paths of directories to copy first (pip: requirements/)
    # before the source tree: the install's command text -> its dependencies-only form (None: cannot)
    deps_only: Callable[[str], str | None]
    # after the source tree: the original RUN's text -> what runs there, or None when nothing needs to
    after: Callable[[str], str] | None
    label: str = ""  # as the message names it: ``pip install``, ``npm ci``...
    project_install: bool = False  # ``pip install .``: the requirements file may not exist yet
    pip_projects: tuple[str, ...] = ()  # the project paths of ``pip install .``, as written


def _unchanged(text: str) -> str:
    return text


def _insert_after(pattern: str, addition: str) -> Callable[[str], str | None]:
    regex = re.compile(pattern)

    def transform(text: str) -> str | None:
        match = regex.search(text)
        if match is None:
            return None
        return text[: match.end()] + addition + text[match.end() :]

    return transform


_CARGO_STUB = "mkdir -p src && echo 'fn main() {}' > src/main.rs && "
_CARGO_RE = re.compile(r"\bcargo\s+(?:\+\S+\s+)?(?:build|fetch)\b")


def _cargo_deps_only(text: str) -> str | None:
    match = _CARGO_RE.search(text)
    if match is None:
        return None
    if _split_parts(text) == ((text.strip(), ""),):  # the install alone: remove the stub after it
        return _CARGO_STUB + text.strip() + " && rm -rf src"
    return text[: match.start()] + _CARGO_STUB + text[match.start() :]


def _cargo_after(text: str) -> str:
    # COPY keeps the files' modification times, older than the stub's build: without the touch cargo
    # would keep the stub binary.
    match = _CARGO_RE.search(text)
    if match is None:
        return text
    return text[: match.start()] + "find src -name '*.rs' -exec touch {} + && " + text[match.start() :]


_PIP_VALUE_OPTIONS = {
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "--src",
    "--upgrade-strategy",
    "--platform",
    "--python-version",
    "--implementation",
    "--abi",
    "--trusted-host",
    "--cache-dir",
    "--progress-bar",
    "--log",
    "--timeout",
    "--retries",
    "--proxy",
    "--cert",
    "--client-cert",
    "-C",
    "--config-settings",
    "--no-binary",
    "--only-binary",
    "--python",
    "--report",
    "--exists-action",
    "--global-option",
    "--install-option",
}
_PIP_BOOTSTRAP = {"pip", "setuptools", "wheel", "poetry", "pipenv", "uv", "virtualenv", "pip-tools"}


@dataclass(frozen=True)
class _PipCall:
    requirements: tuple[str, ...]  # -r files
    constraints: tuple[str, ...]  # -c files
    projects: tuple[str, ...]  # local project paths (``.``, ``-e .``, ``/app``) as written
    packages: tuple[str, ...]  # named packages


def _pip_call(args: list[str]) -> _PipCall | None:
    if not args or args[0] != "install":
        return None
    requirements: list[str] = []
    constraints: list[str] = []
    projects: list[str] = []
    packages: list[str] = []
    words = args[1:]
    i = 0
    while i < len(words):
        word = words[i]
        value: str | None = None
        for short, long, bucket in (("-r", "--requirement", requirements), ("-c", "--constraint", constraints)):
            if word in (short, long) and i + 1 < len(words):
                value = words[i + 1]
                i += 1
            elif word.startswith(long + "="):
                value = word[len(long) + 1 :]
            elif word.startswith(short) and len(word) > 2 and not word.startswith("--"):
                value = word[2:]
            if value is not None:
                bucket.append(value)
                break
        if value is None:
            if word in ("-e", "--editable") and i + 1 < len(words):
                i += 1
                _pip_target(words[i], projects, packages)
            elif word.startswith("--editable="):
                _pip_target(word.split("=", 1)[1], projects, packages)
            elif word in _PIP_VALUE_OPTIONS:
                i += 1
            elif not word.startswith("-"):
                _pip_target(word, projects, packages)
        i += 1
    return _PipCall(tuple(requirements), tuple(constraints), tuple(projects), tuple(packages))


def _pip_target(word: str, projects: list[str], packages: list[str]) -> None:
    path = re.sub(r"\[[^\]]*\]$", "", word)
    archive = re.search(r"\.(whl|zip|tar\.gz|tgz|tar\.bz2|tar)$", path)
    if "://" not in path and not archive and (path in (".", "./") or path.startswith(("./", "../", "/"))):
        projects.append(word)
    else:
        packages.append(word)


def _find_installs(run: _RunArgs, instr: _Instr) -> list[_Install]:
    """The dependency installs of a RUN, each with where it runs."""
    found: list[_Install] = []
    cwd: str | None = instr.workdir
    for words in _commands(run.script):
        name, args = _program(words)
        if name == "cd":
            target = args[0] if args else None
            cwd = None if target is None or target == "-" or cwd is None else _resolve(cwd, _expand(target, instr.env))
            continue
        if cwd is None or not _known(cwd):
            continue
        install = _install(name, args, tuple(words), cwd, instr)
        if install is not None:
            found.append(install)
    return found


def _flags_only(args: list[str], takes_value: Iterable[str] = ()) -> bool:
    return not _positional(args, set(takes_value))


def _install(name: str, args: list[str], words: tuple[str, ...], cwd: str, instr: _Instr) -> _Install | None:
    deps_only: Callable[[str], str | None] = _unchanged
    after: Callable[[str], str] | None = None

    def make(ecosystem: _Ecosystem) -> _Install:
        manifest = _resolve(cwd, ecosystem.primary)
        label = " ".join([name, *args[: 2 if name == "go" else 1]]) if args and not args[0].startswith("-") else name
        return _Install(ecosystem, words, cwd, manifest, (), (), deps_only, after, label=label)

    sub = args[0] if args else ""
    rest = args[1:]
    if name in ("pip", "uv-pip"):
        return _pip_install(_pip_call(args), words, cwd, instr)
    if name == "poetry" and sub in ("install", "sync") and "--only-root" not in rest:
        if "--no-root" not in rest:
            deps_only = _insert_after(r"\bpoetry\s+(?:install|sync)\b", " --no-root")
            after = _unchanged
        return make(_ECOSYSTEMS["poetry"])
    if name == "pipenv" and (sub == "sync" or (sub == "install" and _flags_only(rest, {"--categories"}))):
        return make(_ECOSYSTEMS["pipenv"])
    if name == "uv" and sub == "sync":
        if "--no-install-project" not in rest and "--only-install-project" not in rest:
            deps_only = _insert_after(r"\buv\s+sync\b", " --no-install-project")
            after = _unchanged
        return make(_ECOSYSTEMS["uv"])
    if name == "npm" and (
        sub == "ci"
        or (sub in ("install", "i", "isntall", "in") and _flags_only(rest, {"--omit", "--include", "--loglevel"}))
    ):
        return make(_ECOSYSTEMS["npm"])
    if name == "yarn" and (not args or args[0].startswith("-") or sub == "install"):
        if _flags_only(rest if sub == "install" else args, {"--network-timeout", "--mode", "--cache-folder"}):
            return make(_ECOSYSTEMS["yarn"])
        return None
    if name == "pnpm" and sub in ("install", "i") and _flags_only(rest, {"--filter", "-F", "--reporter"}):
        return make(_ECOSYSTEMS["pnpm"])
    if name == "pnpm" and sub == "fetch":
        return make(_ECOSYSTEMS["pnpm-fetch"])
    if name == "go" and args[:2] == ["mod", "download"] and _flags_only(args[2:]):
        return make(_ECOSYSTEMS["go"])
    if name == "cargo" and sub in ("build", "fetch"):
        deps_only = _cargo_deps_only
        if sub == "build":
            after = _cargo_after
        return make(_ECOSYSTEMS["cargo"])
    if name == "bundle" and (sub == "install" or (not args)):
        return make(_ECOSYSTEMS["bundler"])
    if name == "composer" and sub == "install":
        missing = [f for f in ("--no-scripts", "--no-autoloader") if f not in rest]
        if missing:
            deps_only = _insert_after(r"\bcomposer(?:\.phar)?\s+install\b", " " + " ".join(missing))
            after = _unchanged
        return make(_ECOSYSTEMS["composer"])
    return None


def _pip_install(call: _PipCall | None, words: tuple[str, ...], cwd: str, instr: _Instr) -> _Install | None:
    if call is None:
        return None
    eco = _ECOSYSTEMS["pip"]
    if call.requirements:
        paths = [_resolve(cwd, _expand(p, instr.env)) for p in call.requirements + call.constraints]
        if not all(_known(p) for p in paths):
            return None
        files: list[str] = []
        dirs: list[str] = []
        for path in paths:
            directory = posixpath.dirname(path)
            (files if directory == cwd else dirs).append(path if directory == cwd else directory)
        return _Install(
            eco,
            words,
            cwd,
            paths[0],
            tuple(dict.fromkeys(files)),
            tuple(dict.fromkeys(dirs)),
            _unchanged,
            None,
            label="pip install",
        )
    if call.projects and not call.packages:
        project = _resolve(cwd, _expand(re.sub(r"\[[^\]]*\]$", "", call.projects[0]), instr.env))
        if not _known(project):
            return None
        requirements = posixpath.join(project, "requirements.txt")
        return _Install(
            eco,
            words,
            cwd,
            posixpath.join(project, "pyproject.toml"),
            (requirements,),
            (),
            _pip_dependencies_only(call.projects, posixpath.relpath(requirements, cwd)),
            _unchanged,
            label="pip install",
            project_install=True,
            pip_projects=call.projects,
        )
    return None


def _pip_dependencies_only(projects: Sequence[str], requirements: str) -> Callable[[str], str | None]:
    """``pip install [-e] .`` -> ``pip install -r <requirements>``, the other options kept."""

    def transform_line(line: str) -> str | None:
        tokens = line.split()
        for n, token in enumerate(tokens):
            if re.fullmatch(r"(?:\S*/)?pip[0-9.]*", token) and tokens[n + 1 : n + 2] == ["install"]:
                break
        else:
            return None
        kept: list[str] = []
        for token in tokens[n:]:
            if token.strip("'\"") in projects:
                if kept and kept[-1] in ("-e", "--editable"):
                    kept.pop()
                continue
            kept.append(token)
        if len(kept) == len(tokens[n:]):
            return None
        indent = line[: len(line) - len(line.lstrip())]
        return indent + " ".join(tokens[:n] + kept + ["-r", requirements])

    def transform(text: str) -> str | None:  # line by line, so a heredoc keeps its shape
        lines = text.split("\n")
        for n, line in enumerate(lines):
            changed = transform_line(line)
            if changed is not None:
                return "\n".join(lines[:n] + [changed] + lines[n + 1 :])
        return None

    return transform


def _with_requirements(install: _Install, source: str, tree_dest: str, context: _Context | None) -> _Install:
    """A project install with the requirements file the context has (``requirements.txt`` if unknown)."""
    if not install.project_install or context is None:
        return install
    project = posixpath.dirname(install.files[0])
    relative = posixpath.relpath(project, tree_dest) if project != tree_dest else ""
    base = posixpath.normpath(posixpath.join(source, relative)) if source or relative else ""
    base = "" if base == "." else base
    present = sorted(
        p
        for p in context.files
        if posixpath.dirname(p) == base and fnmatchcase(posixpath.basename(p), "*requirements*.txt")
    )
    if not present or posixpath.join(base, "requirements.txt") in present:
        return install
    requirements = posixpath.join(project, posixpath.basename(present[0]))
    return dataclasses.replace(
        install,
        files=(requirements,),
        deps_only=_pip_dependencies_only(install.pip_projects, posixpath.relpath(requirements, install.cwd)),
    )


# --------------------------------------------------------------------------------------------------
# copy-before-install
# --------------------------------------------------------------------------------------------------

_HOISTED = {"WORKDIR", "ENV", "ARG", "USER", "SHELL"}


def _copies_manifest(copy: _CopyArgs, install: _Install) -> bool:
    """Whether a COPY is a narrow copy of one of the install's manifests."""
    names = set(install.ecosystem.patterns) | {posixpath.basename(p) for p in install.files}
    names |= {posixpath.basename(d) for d in install.dirs}
    concrete = {n for n in names if not _has_glob(n)}
    if install.ecosystem.name == "pip":
        concrete.add("requirements.txt")
    for source in copy.sources:
        if source.startswith("<<") or "://" in source:
            continue
        path = _context_path(source)
        if _is_root(source) or not path:
            continue
        base = posixpath.basename(path)
        if _has_glob(base):
            if any(fnmatchcase(n, base) for n in concrete):
                return True
        elif any(fnmatchcase(base, pattern) for pattern in names):
            return True
    return False


def _broad_source(copy: _CopyArgs, instr: _Instr, install: _Install, context: _Context | None) -> str | None:
    """The source of a COPY that brings the install's manifest with the rest of a tree, as a context path."""
    if copy.from_stage:
        return None
    dest = _resolve(instr.workdir, _expand(copy.dest, instr.env))
    if not _known(dest) or not _under(install.primary, dest):
        return None
    relative = posixpath.relpath(install.primary, dest) if install.primary != dest else ""
    if relative.startswith(".."):
        return None
    for source in copy.sources:
        if source.startswith("<<") or "://" in source:
            continue
        path = _context_path(source)
        if _is_root(source):
            if context is None:
                return ""
            if install.project_install:
                candidates = [posixpath.join(posixpath.dirname(relative), n) for n in ("pyproject.toml", "setup.py")]
            else:
                candidates = [relative]
            if any(context.has_file(c) for c in candidates):
                return ""
        elif context is not None and not _has_glob(path) and context.has_dir(path):
            if install.project_install:
                candidates = [
                    posixpath.join(path, posixpath.dirname(relative), n) for n in ("pyproject.toml", "setup.py")
                ]
            else:
                candidates = [posixpath.join(path, relative)]
            if any(context.has_file(c) for c in candidates):
                return path
    return None


def _copy_before_install(stage: _Stage, context: _Context | None) -> list[Advice]:
    instructions = stage.instructions
    # install -> (index of the earliest COPY that brings its manifest with the tree, its source)
    groups: dict[int, list[tuple[int, _Install, str]]] = {}
    for index, instr in enumerate(instructions):
        if instr.keyword != "RUN":
            continue
        run = _run_args(instr)
        for install in _find_installs(run, instr):
            culprit: tuple[int, str] | None = None
            suppressed = False
            for earlier_index in range(1, index):
                earlier = instructions[earlier_index]
                if earlier.keyword not in ("COPY", "ADD"):
                    continue
                copy = _copy_args(earlier)
                if copy is None:
                    continue
                if _copies_manifest(copy, install):
                    suppressed = True
                    break
                if culprit is None:
                    source = _broad_source(copy, earlier, install, context)
                    if source is not None:
                        culprit = (earlier_index, source)
            if culprit is not None and not suppressed:
                groups.setdefault(culprit[0], []).append((index, install, culprit[1]))
    found = []
    for copy_index, members in sorted(groups.items()):
        advice = _reorder(stage, copy_index, members, context)
        if advice is not None:
            found.append(advice)
    return found


def _reorder(
    stage: _Stage, copy_index: int, members: list[tuple[int, _Install, str]], context: _Context | None
) -> Advice | None:
    instructions = stage.instructions
    tree = instructions[copy_index]
    copy = _copy_args(tree)
    assert copy is not None
    tree_dest = _resolve(tree.workdir, _expand(copy.dest, tree.env))
    last_index = max(index for index, _, _ in members)
    members = [(index, _with_requirements(i, source, tree_dest, context), source) for index, i, source in members]

    manifest_lines: list[str] = []
    for _, install, source in members:
        for line in _manifest_copies(install, source, copy, tree_dest, context):
            if line not in manifest_lines:
                manifest_lines.append(line)

    before: list[str] = []
    after: list[str] = []
    by_run: dict[int, list[_Install]] = {}
    for index, install, _ in members:
        by_run.setdefault(index, []).append(install)
    workdir_after = tree.workdir
    for index in range(copy_index + 1, last_index + 1):
        instr = instructions[index]
        if index in by_run:
            moved = _move_run(instr, by_run[index])
            if moved is None:
                return None
            before.append(moved[0])
            if moved[1]:
                after.append(moved[1])
        elif instr.keyword in _HOISTED:
            before.append(instr.source)
            if instr.keyword == "WORKDIR":
                workdir_after = _after(instr)[0]
        else:
            after.append(instr.source)

    if workdir_after == tree.workdir or copy.dest.startswith("/"):
        tree_line = tree.source
    else:
        dest = _express(tree_dest, workdir_after)
        if dest is None:
            return None
        flags = "".join(written + " " for _, _, written in copy.flags)
        where = json.dumps([*copy.sources, dest]) if copy.json_form else " ".join([*copy.sources, dest])
        tree_line = f"{tree.keyword} {flags}{where}"

    suggestion = "\n".join([*manifest_lines, *before, tree_line, *after])
    installs = [install for _, install, _ in members]
    what = "the whole build context" if all(source == "" for _, _, source in members) else "the source tree"
    labels = _and([f"`{i.label}` (line {instructions[n].line})" for n, i, _ in members])
    manifests = _and(list(dict.fromkeys(m for line in manifest_lines for m in _copy_sources(line))))
    message = (
        f"This COPY brings {what} into the image before {labels}: every change to any file re-runs the install. "
        f"Copying {manifests} first and installing before the rest lets a code change reuse the cached install "
        "layer."
    )
    if any(i.project_install for i in installs):
        message += (
            " pip cannot install only a project's dependencies, so keep them in requirements.txt "
            "(e.g. `pip-compile pyproject.toml`); the project install after the COPY then finds them in place."
        )
    if any(i.ecosystem.name == "cargo" for i in installs):
        message += " Cargo builds the dependencies against a stub main.rs, which the real sources then replace."
    return Advice(tree.line, "copy-before-install", message, suggestion)


def _manifest_copies(
    install: _Install, source: str, copy: _CopyArgs, tree_dest: str, context: _Context | None
) -> list[str]:
    """The ``COPY <manifests> <dest>`` lines that bring the install's manifests in first."""
    eco = install.ecosystem
    manifest_dir = posixpath.dirname(install.primary)
    by_dir: dict[str, list[str]] = {}
    dir_copies: list[tuple[str, str]] = []  # (context path, image path)

    def context_of(image_path: str) -> str:
        relative = posixpath.relpath(image_path, tree_dest) if image_path != tree_dest else ""
        return posixpath.normpath(posixpath.join(source, relative)) if source or relative else ""

    if eco.name == "pip":
        for path in install.files:
            by_dir.setdefault(posixpath.dirname(path), []).append(context_of(path))
        for directory in install.dirs:
            dir_copies.append((context_of(directory), directory))
    else:
        base = context_of(manifest_dir)
        if context is None:
            names = list(eco.usual)
        else:
            names = [posixpath.basename(eco.primary)]
            names += [n for n in eco.companions if context.has_file(posixpath.join(base, n))]
            dir_copies += [
                (posixpath.join(base, d), posixpath.join(manifest_dir, d))
                for d in eco.companion_dirs
                if context.has_dir(posixpath.join(base, d))
            ]
        by_dir[manifest_dir] = [posixpath.join(base, n) if base else n for n in names]

    flags = copy.flag_text()
    lines = []
    for directory, sources in by_dir.items():
        dest = _dest_text(copy.dest, tree_dest, directory, single=len(sources) == 1 and not _has_glob(sources[0]))
        lines.append(f"COPY {flags}{' '.join(sources)} {dest}")
    for context_path, image_path in dir_copies:
        lines.append(f"COPY {flags}{context_path}/ {_dest_text(copy.dest, tree_dest, image_path, single=False)}")
    return lines


def _dest_text(original: str, tree_dest: str, directory: str, *, single: bool) -> str:
    """A destination for files going to ``directory``, written relative to the tree COPY's own."""
    relative = posixpath.relpath(directory, tree_dest) if directory != tree_dest else ""
    if original in (".", "./"):
        if not relative:
            return "." if single else "./"
        return f"{relative}/"
    return posixpath.join(original, relative).rstrip("/") + "/"


def _express(path: str, workdir: str) -> str | None:
    if not path.startswith(_BASE):
        return path
    if workdir.startswith(_BASE):
        return posixpath.relpath(path, workdir)
    return None


def _copy_sources(line: str) -> list[str]:
    words = [w for w in line.split()[1:] if not w.startswith("--")]
    return [w.rstrip("/") or w for w in words[:-1]]


def _move_run(instr: _Instr, installs: list[_Install]) -> tuple[str, str | None] | None:
    """An install RUN -> (what runs before the source tree, what runs after it, if anything)."""
    run = _run_args(instr)
    needs_after = any(i.after is not None for i in installs)
    if run.parts is None:
        if not needs_after:
            return instr.source, None
        text: str | None = instr.source
        for install in installs:
            text = install.deps_only(text) if text is not None else None
        if text is None:
            return None
        return text, _after_text(instr.source, installs)
    parts = list(run.parts)
    install_parts: set[int] = set()
    for install in installs:
        for n, (part, _) in enumerate(parts):
            commands = _commands(part)
            if any(tuple(c) == install.words for c in commands):
                install_parts.add(n)
                break
        else:
            return None
    last = max(install_parts)
    moved = []
    for n, (part, separator) in enumerate(parts[: last + 1]):
        if n in install_parts:
            for install in installs:
                if any(tuple(c) == install.words for c in _commands(part)):
                    new = install.deps_only(part)
                    if new is None:
                        return None
                    part = new
        moved.append((part, separator))
    rest = parts[last + 1 :]
    if not needs_after and not rest and moved == parts:
        return instr.source, None
    before = f"RUN {run.flag_text}{_join_parts(moved)}"
    if needs_after:
        return before, _after_text(instr.source, installs)
    if not rest:
        return before, None
    carried = [(p, s) for p, s in parts[:last] if p.split()[0] in ("cd", "export", "set", "source", ".")]
    return before, f"RUN {run.flag_text}{_join_parts(carried + rest)}"


def _after_text(source: str, installs: list[_Install]) -> str:
    for install in installs:
        if install.after is not None:
            source = install.after(source)
    return source


def _and(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------------------------------
# apt
# --------------------------------------------------------------------------------------------------

#: What a RUN may do besides ``apt-get update`` and still be "the update alone": commands that cannot install
#: packages (anything else -- a script, ``xargs``, a shell -- might, so the rule stays silent).
_APT_ALONE_COMPANIONS = {
    "apt-get",
    "apt",
    "apt-key",
    "echo",
    "printf",
    "set",
    "true",
    ":",
    "export",
    "cd",
    "rm",
    "mkdir",
    "ln",
    "cp",
    "mv",
    "touch",
    "chmod",
    "chown",
    "sed",
    "tee",
    "curl",
    "wget",
    "gpg",
    "dpkg",
}
_APT_USES_INDEX = {"install", "upgrade", "dist-upgrade", "full-upgrade", "build-dep", "source", "download"}
_APT_LISTS = "/var/lib/apt/lists"
_APT_VALUE_OPTIONS = {"-o", "-t", "--target-release", "-c", "--config-file"}


def _apt(words: list[str]) -> str | None:
    """The apt subcommand of an ``apt-get``/``apt`` command, if it is one."""
    name, args = _program(words)
    if name not in ("apt-get", "apt"):
        return None
    positional = _positional(args, _APT_VALUE_OPTIONS)
    return positional[0] if positional else None


def _removes_lists(words: list[str]) -> bool:
    name, args = _program(words)
    return name == "rm" and any(a.startswith(_APT_LISTS) for a in args)


def _apt_update_alone(stage: _Stage) -> list[Advice]:
    found = []
    instructions = stage.instructions
    for index, instr in enumerate(instructions):
        if instr.keyword != "RUN":
            continue
        run = _run_args(instr)
        commands = _commands(run.script)
        subcommands = [_apt(c) for c in commands]
        if "update" not in subcommands or any(s in _APT_USES_INDEX for s in subcommands):
            continue
        if not all(_program(c)[0] in _APT_ALONE_COMPANIONS for c in commands):
            continue
        follower = next((i for i in instructions[index + 1 :] if i.keyword == "RUN"), None)
        merged = _merged_install(follower) if follower is not None else None
        lead = ""
        if run.parts is not None:
            others = [(p, s) for p, s in run.parts if not any(_apt(c) == "update" for c in _commands(p))]
            if others:
                lead = f"RUN {run.flag_text}{_join_parts(others)}\n"
        if merged is not None and follower is not None:
            suggestion = lead + merged
            where = f" Merged here with the install on line {follower.line}."
        else:
            suggestion = lead + _apt_block(
                ["apt-get update", "apt-get install -y --no-install-recommends <packages>", f"rm -rf {_APT_LISTS}/*"]
            )
            where = ""
        message = (
            "`apt-get update` alone in its own RUN is cached as its own layer: a later change to the install "
            "reuses that old package index, so the install fails or gets outdated versions. Update, install "
            "and remove the lists in one RUN." + where
        )
        found.append(Advice(instr.line, "apt-update-alone", message, suggestion))
    return found


def _merged_install(follower: _Instr) -> str | None:
    run = _run_args(follower)
    if run.parts is None:
        return None
    parts = [p for p, _ in run.parts]
    if not any(_apt(c) == "install" for p in parts for c in _commands(p)):
        return None
    lines = ["apt-get update"]
    for part in parts:
        commands = _commands(part)
        if any(_apt(c) == "update" for c in commands) and len(commands) == 1:
            continue
        if len(commands) == 1 and _apt(commands[0]) == "install":
            lines.append(_normal_install(part))
        else:
            lines.append(part)
    if not any(_removes_lists(c) for p in parts for c in _commands(p)):
        lines.append(f"rm -rf {_APT_LISTS}/*")
    return _apt_block(lines, run.flag_text)


def _normal_install(part: str) -> str:
    """``apt-get install`` with ``-y --no-install-recommends`` first, the rest as written."""
    tokens = part.split()
    n = next((n for n, token in enumerate(tokens) if posixpath.basename(token) in ("apt-get", "apt")), None)
    if n is None:
        return part
    try:
        at = tokens.index("install", n + 1)
    except ValueError:
        return part
    drop = {"-y", "--yes", "--assume-yes", "--no-install-recommends"}
    options = [t for t in tokens[n + 1 : at] if t not in drop]
    rest = [t for t in tokens[at + 1 :] if t not in drop]
    return " ".join(tokens[:n] + ["apt-get", *options, "install", "-y", "--no-install-recommends", *rest])


def _apt_block(lines: list[str], flags: str = "") -> str:
    return f"RUN {flags}" + " \\\n    && ".join(lines)


def _apt_no_clean(stage: _Stage) -> list[Advice]:
    found = []
    for instr in stage.instructions:
        if instr.keyword != "RUN":
            continue
        run = _run_args(instr)
        if run.exec_form or any(t.startswith(("/var/lib/apt", "/var/cache/apt")) for t in run.cache_targets()):
            continue
        commands = _commands(run.script)
        subcommands = [_apt(c) for c in commands]
        if "update" not in subcommands or not any(s in _APT_USES_INDEX for s in subcommands):
            continue
        if any(_removes_lists(c) for c in commands) or _APT_LISTS in run.script:
            continue
        message = (
            "The package lists `apt-get update` downloads (tens of MB) stay in this layer and ship with the image; "
            "remove them in the same RUN, since a later RUN cannot take them out of this layer."
        )
        found.append(Advice(instr.line, "apt-no-clean", message, _append_command(instr, run, f"rm -rf {_APT_LISTS}/*")))
    return found


def _append_command(instr: _Instr, run: _RunArgs, command: str) -> str:
    raw = list(instr.written.raw)
    if run.heredoc:  # before the first heredoc's terminator
        match = _HEREDOC_RE.search(run.command)
        word = match.group(3) if match else ""
        for n in range(1, len(raw)):
            if raw[n].strip() == word:
                return "\n".join(raw[:n] + [command] + raw[n:])
    return "\n".join(raw[:-1] + [raw[-1].rstrip() + f" {instr.written.escape}", f"    && {command}"])


# --------------------------------------------------------------------------------------------------
# pip's cache
# --------------------------------------------------------------------------------------------------

_PIP_INSTALL_RE = re.compile(r"(?<!uv )\b(?:pip[0-9.]*|-m\s+pip)\s+install\b")


def _pip_no_cache_dir(stage: _Stage) -> list[Advice]:
    found = []
    for instr in stage.instructions:
        if instr.keyword != "RUN":
            continue
        run = _run_args(instr)
        if "PIP_NO_CACHE_DIR" in instr.env or "PIP_NO_CACHE_DIR=" in run.script:
            continue
        if any(".cache" in t or t in ("/root", "/home") for t in run.cache_targets()):
            continue
        missing = False
        for words in _commands(run.script):
            name, args = _program(words)
            call = _pip_call(args) if name == "pip" else None
            if call is None or "--no-cache-dir" in args or any(a.startswith("--cache-dir") for a in args):
                continue
            named = {re.split(r"[<>=!~\[;]", p)[0].lower() for p in call.packages}
            if call.requirements or call.projects or not named <= _PIP_BOOTSTRAP:
                missing = True
        if not missing:
            continue
        message = (
            "pip keeps every package it downloads in its cache (~/.cache/pip), which stays in this layer and "
            "ships with the image; `--no-cache-dir` leaves it out."
        )
        suggestion = _add_no_cache_dir(instr.source)
        if suggestion != instr.source:
            found.append(Advice(instr.line, "pip-no-cache-dir", message, suggestion))
    return found


def _add_no_cache_dir(source: str) -> str:
    out = ""
    position = 0
    for match in _PIP_INSTALL_RE.finditer(source):
        segment_end = re.search(r"&&|\|\||;|(?<!\\)\n", source[match.end() :])
        segment = source[match.end() : match.end() + segment_end.start() if segment_end else len(source)]
        out += source[position : match.end()]
        if "--no-cache-dir" not in segment:
            out += " --no-cache-dir"
        position = match.end()
    return out + source[position:]


# --------------------------------------------------------------------------------------------------
# FROM
# --------------------------------------------------------------------------------------------------


def _latest_base(stage: _Stage) -> list[Advice]:
    image = stage.image
    if not image or not _known(image) or image.lower() == "scratch" or stage.parent is not None:
        return []
    if "@" in image:
        return []
    name, tag = image, None
    last_part = image.rsplit("/", 1)[-1]
    if ":" in last_part:
        name, tag = image.rsplit(":", 1)
    if tag is not None and tag != "latest":
        return []
    instr = stage.instructions[0]
    written = instr.written.raw[0]
    if "$" in _first_image_word(instr) or _first_image_word(instr) not in written:
        return []
    pinned = f"{name}:<version>"
    word = re.compile(r"(?<!\S)" + re.escape(_first_image_word(instr)) + r"(?!\S)")
    suggestion = word.sub(lambda _: pinned, written, count=1)
    message = (
        f"`{image}` is {'the moving `latest` tag' if tag else 'untagged, so it means `latest`'}: the base changes "
        "under you, so builds stop being reproducible and a fresh pull invalidates every cached layer after FROM. "
        "Pin a version tag (or a digest)."
    )
    return [Advice(instr.line, "latest-base", message, suggestion)]


def _first_image_word(instr: _Instr) -> str:
    words = [w for w in instr.args.split() if not w.startswith("--")]
    return words[0]


# --------------------------------------------------------------------------------------------------
# ADD
# --------------------------------------------------------------------------------------------------

_ARCHIVE_RE = re.compile(r"\.(tar|tgz|tbz|tbz2|txz|tzst|gz|bz2|xz|zst|lz4|lzma|z)$", re.IGNORECASE)


def _add_instead_of_copy(stage: _Stage, context: _Context | None) -> list[Advice]:
    found = []
    for instr in stage.instructions:
        if instr.keyword != "ADD":
            continue
        copy = _copy_args(instr)
        if copy is None or any(name in ("checksum", "keep-git-dir", "unpack") for name, _, _ in copy.flags):
            continue
        if not all(_local_plain(source, context) for source in copy.sources):
            continue
        raw = list(instr.written.raw)
        raw[0] = re.sub(r"^(\s*)ADD\b", r"\1COPY", raw[0], count=1, flags=re.IGNORECASE)
        message = (
            "ADD copies local files like COPY but also unpacks tar archives and fetches URLs, so a file that "
            "happens to be an archive lands unpacked; COPY says exactly what it does."
        )
        found.append(Advice(instr.line, "add-instead-of-copy", message, "\n".join(raw)))
    return found


def _local_plain(source: str, context: _Context | None) -> bool:
    """A local source ADD would copy as COPY does: not a URL, a git address, a heredoc or an archive."""
    if source.startswith(("<<", "git@")) or "://" in source or "$" in source:
        return False
    path = _context_path(source)
    if _is_root(source):
        return True
    if _ARCHIVE_RE.search(path):
        return False
    if _has_glob(path):
        if context is None:
            return False
        matches = [p for p in context.files if fnmatchcase(p, path)]
        return bool(matches) and not any(_ARCHIVE_RE.search(p) for p in matches)
    return True


# --------------------------------------------------------------------------------------------------
# .dockerignore
# --------------------------------------------------------------------------------------------------

#: Entries for a suggested .dockerignore: (pattern, what in the context shows it is worth listing).
_IGNORE_ENTRIES = (
    (".git", ".git"),
    ("**/node_modules", "node_modules"),
    ("**/__pycache__", "__pycache__"),
    ("**/*.pyc", "*.pyc"),
    (".venv", ".venv"),
    ("venv", "venv"),
    (".tox", ".tox"),
    (".pytest_cache", ".pytest_cache"),
    (".mypy_cache", ".mypy_cache"),
    ("dist", "dist"),
    ("build", "build"),
    ("target", "target"),
    ("coverage", "coverage"),
    (".idea", ".idea"),
    (".vscode", ".vscode"),
    ("*.log", "*.log"),
    (".DS_Store", ".DS_Store"),
)
_GENERIC_IGNORE = (".git", "**/node_modules", "**/__pycache__", "**/*.pyc", ".venv", "dist", "build")


def _no_dockerignore(
    stages: list[_Stage],
    files: int | None,
    size: int | None,
    has_dockerignore: bool | None,
    context: _Context | None,
) -> list[Advice]:
    if has_dockerignore is not False:
        return []
    reasons = []
    if files is not None and files >= CONTEXT_FILES_LIMIT:
        reasons.append(f"{files} files")
    if size is not None and size >= CONTEXT_BYTES_LIMIT:
        reasons.append(f"{size / (1024 * 1024):.1f} MiB")
    heavy = [name for name in (".git", "node_modules") if context is not None and context.has_component(name)]
    if not reasons and not heavy:
        return []
    if context is not None:
        entries = [
            pattern
            for pattern, marker in _IGNORE_ENTRIES
            if context.has_component(marker)
            or (_has_glob(marker) and any(fnmatchcase(posixpath.basename(p), marker) for p in context.files))
            or (not _has_glob(marker) and marker in {posixpath.basename(p) for p in context.files})
        ]
        if not entries:
            entries = list(_GENERIC_IGNORE)
    else:
        entries = list(_GENERIC_IGNORE)
    entries = [e for e in entries if not _needed(e, stages)]
    if not entries:
        return []
    holds = _and(reasons + [f"{name}/" for name in heavy])
    message = (
        f"There is no .dockerignore and the build context holds {holds}: all of it is sent on every build, and "
        "`COPY . .` layers rebuild whenever any of it changes (.git on every commit). A .dockerignore leaves "
        "it out."
    )
    return [Advice(1, "no-dockerignore", message, "\n".join(entries))]


def _needed(pattern: str, stages: list[_Stage]) -> bool:
    """Whether some COPY/ADD names a path the pattern would ignore."""
    try:
        ignore = DockerIgnore.parse(pattern)
    except DockerIgnoreError:
        return True
    for stage in stages:
        for instr in stage.instructions:
            if instr.keyword not in ("COPY", "ADD"):
                continue
            copy = _copy_args(instr)
            if copy is None or copy.from_stage:
                continue
            for source in copy.sources:
                path = _context_path(source)
                if path and not _is_root(source) and not source.startswith("<<") and ignore.ignores(path):
                    return True
    return False
