"""`.dockerignore` matching with the docker CLI's rules (moby/patternmatcher and its ignorefile reader).

BuildKit does not apply `.dockerignore` to a context sent over the API and the classic daemon applies it
only partly, so Layerdeck trims the context itself and must agree with what `docker build` would send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class DockerIgnoreError(ValueError):
    """A line of a .dockerignore that is not a valid pattern (docker refuses to build with it too)."""

    def __init__(self, line_number: int, line: str, reason: str) -> None:
        super().__init__(f"line {line_number} ({line.strip()!r}): {reason}")
        self.line_number = line_number
        self.line = line
        self.reason = reason


class _Kind(Enum):
    # moby compiles a pattern into the cheapest of these; the kind is part of the semantics, not only an
    # optimisation: a leading "**" makes a plain suffix test, so "**file" matches "myfile".
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    REGEXP = "regexp"


@dataclass(frozen=True)
class _Pattern:
    cleaned: str
    exclusion: bool
    kind: _Kind
    regexp: re.Pattern[str] | None

    def matches(self, path: str) -> bool:
        if self.kind is _Kind.EXACT:
            return path == self.cleaned
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.cleaned[:-2])  # the pattern ends with "**"
        if self.kind is _Kind.SUFFIX:
            suffix = self.cleaned[2:]  # the pattern starts with "**"
            # "**/foo" also matches "foo" itself, at the root.
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regexp is not None
        return self.regexp.fullmatch(path) is not None


class DockerIgnore:
    """An ordered list of patterns; the last one that matches a path decides whether it is ignored."""

    def __init__(self, patterns: list[_Pattern]) -> None:
        self._patterns = patterns

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        """Read a .dockerignore the way the docker CLI does; raises DockerIgnoreError on a bad pattern."""
        patterns: list[_Pattern] = []
        # Go's line scanner splits on "\n" only and drops one trailing "\r"; str.splitlines would also
        # split on form feeds and other separators docker treats as part of a pattern.
        for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
            line = raw.removesuffix("\r")
            # Only a "#" in the very first column starts a comment, as in the docker CLI.
            if line.startswith("#"):
                continue
            pattern = line.strip()
            if not pattern:
                continue
            exclusion = pattern.startswith("!")
            if exclusion:
                pattern = pattern[1:].strip()
                if not pattern:
                    raise DockerIgnoreError(number, raw, 'an exception "!" needs a pattern after it')
            pattern = clean_path(pattern)
            # "/foo" means foo at the context root, which is where every pattern is anchored anyway.
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
            try:
                kind, regexp = _compile(pattern)
            except _BadPattern as error:
                raise DockerIgnoreError(number, raw, str(error)) from None
            patterns.append(_Pattern(pattern, exclusion, kind, regexp))
        return cls(patterns)

    def ignores(self, path: str) -> bool:
        """Whether `path` (relative to the context root, '/'-separated) is left out of the context.

        As moby's MatchesOrParentMatches: a pattern matches a path when it matches the path itself or any
        of its parent directories, so "node_modules" drops everything below it; a later "!" pattern can
        bring a file back.
        """
        path = clean_path(path)
        if path == ".":
            return False  # docker refuses to ignore the whole context
        parents = path.split("/")[:-1]
        ancestors = ["/".join(parents[: i + 1]) for i in range(len(parents))]
        ignored = False
        for pattern in self._patterns:
            # An inclusion cannot change an already ignored path, nor an exception a kept one.
            if pattern.exclusion != ignored:
                continue
            if pattern.matches(path) or any(pattern.matches(parent) for parent in ancestors):
                ignored = not pattern.exclusion
        return ignored


def clean_path(path: str) -> str:
    """Go's path.Clean: collapse slashes, drop "." and resolve ".." lexically; "" becomes "."."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


class _BadPattern(ValueError):
    pass


def _compile(pattern: str) -> tuple[_Kind, re.Pattern[str] | None]:
    """Translate a pattern as moby's Pattern.compile does, and validate it as Go's filepath.Match does.

    Two places differ on purpose from moby, which pastes the pattern into a Go regexp almost verbatim:
    an escaped character is always literal ("\\d" is a "d", not a digit), and a character class is
    rebuilt from its parsed ranges so Python's regexp syntax never reinterprets it.
    """
    kind = _Kind.EXACT
    regex: list[str] = []
    pos, end = 0, len(pattern)
    first = True
    while pos < end:
        char = pattern[pos]
        pos += 1
        if char == "*":
            if pos < end and pattern[pos] == "*":
                pos += 1
                if pos < end and pattern[pos] == "/":
                    pos += 1  # "**/" is the same as "**"
                if pos == end:
                    # A trailing "**" matches everything below, like .gitignore.
                    if kind is _Kind.EXACT:
                        kind = _Kind.PREFIX
                    else:
                        regex.append(".*")
                        kind = _Kind.REGEXP
                else:
                    regex.append("(?:.*/)?")  # any number of directories, including none
                    kind = _Kind.REGEXP
                if first:
                    kind = _Kind.SUFFIX
            else:
                regex.append("[^/]*")
                kind = _Kind.REGEXP
        elif char == "?":
            regex.append("[^/]")
            kind = _Kind.REGEXP
        elif char == "\\":
            if pos == end:
                raise _BadPattern("it ends with a lone backslash")
            regex.append(re.escape(pattern[pos]))
            pos += 1
            kind = _Kind.REGEXP
        elif char == "[":
            class_regex, pos = _parse_class(pattern, pos)
            regex.append(class_regex)
            kind = _Kind.REGEXP
        elif char == "]":
            regex.append(re.escape(char))
            kind = _Kind.REGEXP
        else:
            regex.append(re.escape(char))
        first = False
    if kind is not _Kind.REGEXP:
        return kind, None
    return kind, re.compile("".join(regex))


def _parse_class(pattern: str, pos: int) -> tuple[str, int]:
    """Parse a "[...]" class whose "[" is just before `pos`, with Go's rules; return its regex and the end."""
    negated = pos < len(pattern) and pattern[pos] == "^"
    if negated:
        pos += 1
    ranges: list[str] = []
    count = 0
    while True:
        if pos < len(pattern) and pattern[pos] == "]" and count > 0:
            pos += 1
            break
        low, pos = _class_char(pattern, pos)
        high = low
        if pattern[pos] == "-":
            high, pos = _class_char(pattern, pos + 1)
        # Go accepts a reversed range such as "z-a"; it matches nothing, whereas Python would refuse it.
        if low <= high:
            ranges.append(re.escape(low) if low == high else f"{re.escape(low)}-{re.escape(high)}")
        count += 1
    if not ranges:
        return ("[^/]" if negated else "(?!)"), pos
    return f"[{'^' if negated else ''}{''.join(ranges)}]", pos


def _class_char(pattern: str, pos: int) -> tuple[str, int]:
    """One possibly escaped character of a class (Go's getEsc); something must follow it."""
    if pos >= len(pattern) or pattern[pos] in "-]":
        raise _BadPattern('it has a malformed character class "[...]"')
    if pattern[pos] == "\\":
        pos += 1
        if pos >= len(pattern):
            raise _BadPattern('it has a malformed character class "[...]"')
    char = pattern[pos]
    pos += 1
    if pos >= len(pattern):
        raise _BadPattern('it has an unclosed character class "["')
    return char, pos
