"""Cache insight: why a step missed the layer cache, and two builds side by side.

Pure: the facts of two builds (Dockerfile text, build args, the image ids their FROMs resolved to, their
steps, and the file manifests of their contexts) in, reasons and comparisons out. No engine, no database.

A step that was not cached gets a ``miss_reason``, ``{"kind": ..., "text": ..., ...details}``, from the
first of these that holds (docs/API.md lists the fields of each kind):

* ``no_cache`` -- the build asked for no cache;
* ``first_build`` -- no earlier successful build of this image name (and builder: the classic builder and
  BuildKit keep separate caches), or none reached this step;
* ``base_image_changed`` -- the stage's first step, when its ``FROM`` names another image or the same name
  now resolves to another image id;
* ``parent_missed`` -- the step before it in its stage (or the end of the stage it is built ``FROM`` /
  copies ``--from``) missed, and every step after a miss is rebuilt: points at the first step of that run
  of misses, the one whose miss carried down;
* ``instruction_changed`` -- its text, or an instruction between it and the previous step that makes no
  step of its own (BuildKit: ``ENV``, ``ARG``, ``LABEL``), differs;
* ``build_arg_changed`` -- a build arg in scope (declared by an ``ARG`` in the stage before it) has another
  value and the step sees it (every ``RUN``; others where they name it); secret-looking args' values are
  masked (:func:`webapp.builds.options.is_secret_arg`);
* ``files_changed`` -- a ``COPY``/``ADD`` whose source files (after .dockerignore) were added, removed or
  modified;
* ``unknown`` -- nothing Layerdeck can see changed: the engine no longer had the layer (pruned, evicted).

Steps are matched between builds by their place in the Dockerfile: stage number, then position within
the stage (the FROM is 0), so an inserted line shows as the instruction that changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from webapp.builds import manifest as files
from webapp.builds.buildkit import DockerfileInstruction, DockerfileStage, dockerfile_stages, parse_dockerfile
from webapp.builds.options import SECRET_MASK, is_secret_arg

MASK = SECRET_MASK
REACHED = ("built", "cached")
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-+][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass
class BuildFacts:
    """What cache insight needs of one build. `steps` are step dicts (index, stage, instruction, status,
    cached, miss_reason, ...) by index; `manifest` is called at most once, when files must be compared."""

    id: int | None
    dockerfile_text: str
    args: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = False
    base_images: Mapping[str, str] = field(default_factory=dict)  # FROM reference -> image id
    steps: dict[int, dict[str, Any]] = field(default_factory=dict)
    manifest: Callable[[], files.Manifest | None] = lambda: None

    @cached_property
    def layout(self) -> _Layout:
        return _Layout(self.dockerfile_text)

    @cached_property
    def files(self) -> files.Manifest | None:
        return self.manifest()


def arg_token(build: BuildFacts, name: str, default: str | None) -> str | None:
    """The value a build gave an arg, as compared between builds. Secret args arrive as keyed digests
    (Build.comparable_args): compared, never shown."""
    return build.args.get(name, default)


def shown_arg(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    return MASK if is_secret_arg(name) else value


# --- The Dockerfile's shape ------------------------------------------------------------------------------


class _Layout:
    def __init__(self, text: str) -> None:
        instructions = parse_dockerfile(text)
        self.globals = [i for i in instructions if i.stage is None]
        self.stages: list[DockerfileStage] = dockerfile_stages(text)
        self.where: dict[int, tuple[int, int]] = {}  # instruction index -> (stage, position in stage)
        for stage in self.stages:
            for position, instruction in enumerate(stage.instructions):
                self.where[instruction.index] = (stage.number, position)

    def instruction(self, stage: int, position: int) -> DockerfileInstruction | None:
        if stage >= len(self.stages) or position >= len(self.stages[stage].instructions):
            return None
        return self.stages[stage].instructions[position]

    def stage_named(self, ref: str, before: int) -> int | None:
        """The earlier stage a FROM or --from names, if it names one."""
        for stage in self.stages[:before]:
            if stage.name is not None and stage.name.lower() == ref.lower():
                return stage.number
        if ref.isdigit() and int(ref) < before:
            return int(ref)
        return None


def _arg_defaults(
    instructions: list[DockerfileInstruction], inherited: Mapping[str, str | None]
) -> dict[str, str | None]:
    """ARG lines -> name: default (None when declared without one and not inherited)."""
    found: dict[str, str | None] = {}
    for instruction in instructions:
        if instruction.keyword != "ARG":
            continue
        for word in instruction.text.split()[1:]:
            name, equals, value = word.partition("=")
            found[name] = value.strip("\"'") if equals else inherited.get(name)
    return found


def _expand(text: str, values: Mapping[str, str | None]) -> str:
    return _VAR.sub(lambda m: values.get(m.group(1) or m.group(2)) or "", text)


def from_image(build: BuildFacts, stage: DockerfileStage) -> tuple[str, int | None]:
    """(the FROM reference with global args expanded, or the earlier stage it names)."""
    words = [w for w in stage.instructions[0].text.split()[1:] if not w.startswith("--")]
    raw = words[0] if words else ""
    defaults = _arg_defaults(build.layout.globals, {})
    values = {name: arg_token(build, name, default) for name, default in defaults.items()}
    ref = _expand(raw, values)
    return ref, build.layout.stage_named(ref, stage.number)


def base_references(dockerfile_text: str, args: Mapping[str, str]) -> list[str]:
    """The images a Dockerfile's stages start FROM (not scratch, not earlier stages): to resolve at build time."""
    build = BuildFacts(None, dockerfile_text, args)
    refs = []
    for stage in build.layout.stages:
        ref, parent = from_image(build, stage)
        if parent is None and ref and ref.lower() != "scratch" and ref not in refs:
            refs.append(ref)
    return refs


def copy_sources(text: str) -> tuple[list[str], str | None]:
    """A COPY/ADD line -> (its sources, the --from value if any)."""
    rest = text.split(None, 1)[1] if len(text.split(None, 1)) > 1 else ""
    source_from = None
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        if flag.lower().startswith("--from="):
            source_from = flag.split("=", 1)[1]
    words: list[str]
    if rest.startswith("["):
        try:
            loaded = json.loads(rest)
            words = [str(w) for w in loaded] if isinstance(loaded, list) else []
        except ValueError:
            words = rest.split()
    else:
        words = rest.split()
    return words[:-1], source_from


# --- Reasons ----------------------------------------------------------------------------------------------


class MissExplainer:
    """Gives each step of a build that missed the cache its reason, against an earlier build (or none).

    Feed it the build's steps as they change (:meth:`observe`); it keeps the steps seen so far, since a
    step's reason may be that an earlier one missed.
    """

    def __init__(self, new: BuildFacts, old: BuildFacts | None, *, name: str | None = None) -> None:
        self.new = new
        self.old = old
        self.name = name  # the image name, for sentences

    def observe(self, step: dict[str, Any]) -> dict[str, Any] | None:
        """Record a step (as the API shapes it) and return its miss_reason (None unless it missed)."""
        step = dict(step)
        step["miss_reason"] = self._explain(step) if step.get("cached") is False else None
        self.new.steps[step["index"]] = step
        reason: dict[str, Any] | None = step["miss_reason"]
        return reason

    def _explain(self, step: dict[str, Any]) -> dict[str, Any]:
        new, old = self.new, self.old
        if new.no_cache:
            return {"kind": "no_cache", "text": "Built without the cache, as this build asked (no cache)."}
        if old is None:
            about = f" of {self.name}" if self.name else ""
            return {"kind": "first_build", "text": f"The first build{about} here: nothing to reuse yet.",
                    "compared_with": None}
        where = new.layout.where.get(step["index"])
        if where is None:
            return self._unknown()
        stage_no, position = where
        stage = new.layout.stages[stage_no]
        old_instruction = old.layout.instruction(stage_no, position)
        old_step = old.steps.get(old_instruction.index) if old_instruction is not None else None
        if old_instruction is None or (old_step is not None and old_step.get("status") not in REACHED):
            return {"kind": "first_build", "compared_with": old.id,
                    "text": f"Build #{old.id} did not reach this step, so there was nothing to reuse."}

        previous = self._previous_step(stage_no, position)
        if previous is None:
            reason = self._base(stage)
            if reason is not None:
                return reason
            since = 0
        elif previous.get("cached") is False:
            return self._parent(previous)
        else:
            since = new.layout.where[previous["index"]][1]

        for p in range(since + 1, position + 1):
            now, before = stage.instructions[p], old.layout.instruction(stage_no, p)
            if before is None or before.text != now.text:
                return {"kind": "instruction_changed", "compared_with": old.id, "index": now.index,
                        "old": before.text if before is not None else None, "new": now.text,
                        "text": "The instruction changed." if now.index == step["index"]
                        else f"The {now.keyword} before it changed."}

        changed = self._changed_args(stage, position)
        if changed:
            names = ", ".join(c["name"] for c in changed)
            plural = "s" if len(changed) > 1 else ""
            return {"kind": "build_arg_changed", "compared_with": old.id, "args": changed,
                    "text": f"Build arg{plural} {names} changed."}

        instruction = stage.instructions[position]
        if instruction.keyword in ("COPY", "ADD"):
            reason = self._copy(instruction, stage)
            if reason is not None:
                return reason
        return self._unknown()

    def _unknown(self) -> dict[str, Any]:
        return {"kind": "unknown", "compared_with": self.old.id if self.old else None,
                "text": "Nothing Layerdeck can see changed: the engine no longer had this layer "
                        "(its cache was pruned or evicted)."}

    def _steps_of(self, stage_no: int) -> list[dict[str, Any]]:
        where = self.new.layout.where
        return sorted((s for s in self.new.steps.values() if where.get(s["index"], (-1, 0))[0] == stage_no),
                      key=lambda s: s["index"])

    def _previous_step(self, stage_no: int, position: int) -> dict[str, Any] | None:
        """The nearest earlier step of the stage the engine made a cache decision on."""
        where = self.new.layout.where
        earlier = [s for s in self._steps_of(stage_no)
                   if where[s["index"]][1] < position and s.get("cached") is not None]
        return earlier[-1] if earlier else None

    def _last_of_stage(self, stage_no: int) -> dict[str, Any] | None:
        decided = [s for s in self._steps_of(stage_no) if s.get("cached") is not None]
        return decided[-1] if decided else None

    def _parent(self, missed: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """parent_missed, pointing at the first miss of the run `missed` belongs to."""
        reason = missed.get("miss_reason") or {}
        if reason.get("kind") == "parent_missed":
            target = {k: reason[k] for k in ("step", "instruction", "stage")}
        else:
            target = {"step": missed["index"], "instruction": missed["instruction"], "stage": missed["stage"]}
        where = "" if not extra.get("via") else f" ({extra['via']})"
        return {"kind": "parent_missed", **target, **extra,
                "compared_with": self.old.id if self.old else None,
                "text": f"Step {target['step']} missed the cache{where}, so every step after it was rebuilt."}

    def _base(self, stage: DockerfileStage) -> dict[str, Any] | None:
        """The stage's first step: its FROM image changed, or the stage it starts from missed."""
        assert self.old is not None
        ref, parent = from_image(self.new, stage)
        if parent is not None:
            last = self._last_of_stage(parent)
            if last is not None and last.get("cached") is False:
                return self._parent(last, via=f"FROM {ref}")
            return None
        old_stage = self.old.layout.stages[stage.number] if stage.number < len(self.old.layout.stages) else None
        if old_stage is None:
            return None
        old_ref, old_parent = from_image(self.old, old_stage)
        if old_parent is not None:
            return None  # FROM a stage before, an image now: the FROM line differs, said below
        old_id, new_id = self.old.base_images.get(old_ref), self.new.base_images.get(ref)
        if old_ref != ref or (old_id and new_id and old_id != new_id):
            text = (f"The base image changed from {old_ref} to {ref}." if old_ref != ref
                    else f"The base image {ref} is another image now ({_short(old_id)} → {_short(new_id)}).")
            return {"kind": "base_image_changed", "compared_with": self.old.id, "image": ref,
                    "old_image": old_ref, "old_id": old_id, "new_id": new_id, "text": text}
        return None

    def _changed_args(self, stage: DockerfileStage, position: int) -> list[dict[str, Any]]:
        assert self.old is not None
        globals_new = _arg_defaults(self.new.layout.globals, {})
        globals_old = _arg_defaults(self.old.layout.globals, {})
        in_scope = _arg_defaults(list(stage.instructions[1:position]), globals_new)
        old_stage = self.old.layout.stages[stage.number]
        old_scope = _arg_defaults(list(old_stage.instructions[1:position]), globals_old)
        instruction = stage.instructions[position]
        used = {m.group(1) or m.group(2) for m in _VAR.finditer(instruction.text)}
        changed = []
        for name in sorted(in_scope):
            if instruction.keyword != "RUN" and name not in used:
                continue  # only RUN sees every arg in scope (as its environment)
            new_value = arg_token(self.new, name, in_scope[name])
            old_value = arg_token(self.old, name, old_scope.get(name))
            if new_value != old_value:
                secret = is_secret_arg(name)
                changed.append({"name": name, "old": shown_arg(name, old_value), "new": shown_arg(name, new_value),
                                "secret": secret})
        return changed

    def _copy(self, instruction: DockerfileInstruction, stage: DockerfileStage) -> dict[str, Any] | None:
        assert self.old is not None
        sources, source_from = copy_sources(instruction.text)
        if source_from is not None:
            parent = self.new.layout.stage_named(source_from, stage.number)
            last = self._last_of_stage(parent) if parent is not None else None
            if last is not None and last.get("cached") is False:
                return self._parent(last, via=f"COPY --from={source_from}")
            return None
        patterns = [p for p in (files.source_pattern(s) for s in sources) if p is not None]
        if not patterns:
            return None
        old_files, new_files = self.old.files, self.new.files
        if old_files is None or new_files is None:
            return None
        changes = files.diff(old_files, new_files, patterns)
        if not changes:
            return None
        return {"kind": "files_changed", "compared_with": self.old.id, **changes.to_dict(),
                "text": _files_sentence(changes)}


def _short(image_id: str | None) -> str:
    return (image_id or "?").split(":")[-1][:12]


def _files_sentence(changes: files.FileChanges) -> str:
    named = (changes.modified + changes.added + changes.removed)[:3]
    more = changes.count - len(named)
    listed = ", ".join(named) + (f" and {more} more" if more > 0 else "")
    noun = "file" if changes.count == 1 else "files"
    return f"{changes.count} source {noun} changed: {listed}."


# --- Two builds side by side ------------------------------------------------------------------------------


def compare(a: BuildFacts, b: BuildFacts) -> dict[str, Any]:
    """Rows of instructions aligned by stage and position, each side with its step (or none); the build
    args that differ; the context files that differ (per COPY/ADD row too)."""
    manifests = (a.files, b.files) if a.files is not None and b.files is not None else None
    stage_count = max(len(a.layout.stages), len(b.layout.stages))
    rows: list[dict[str, Any]] = []
    for number in range(stage_count):
        sa = a.layout.stages[number] if number < len(a.layout.stages) else None
        sb = b.layout.stages[number] if number < len(b.layout.stages) else None
        label = (sb or sa).label if (sb or sa) else str(number)  # type: ignore[union-attr]
        length = max(len(sa.instructions) if sa else 0, len(sb.instructions) if sb else 0)
        for position in range(length):
            ia = a.layout.instruction(number, position)
            ib = b.layout.instruction(number, position)
            row: dict[str, Any] = {
                "stage": label, "position": position,
                "a": _side(ia, a), "b": _side(ib, b),
                "same_instruction": ia is not None and ib is not None and ia.text == ib.text,
                "files": None,
            }
            main = ib or ia
            assert main is not None
            if manifests is not None and main.keyword in ("COPY", "ADD"):
                sources, source_from = copy_sources(main.text)
                patterns = [p for p in (files.source_pattern(s) for s in sources) if p is not None]
                if source_from is None and patterns:
                    row["files"] = files.diff(manifests[0], manifests[1], patterns).to_dict()
            rows.append(row)
    names = sorted(set(a.args) | set(b.args))
    args = [{"name": n, "a": shown_arg(n, a.args.get(n)), "b": shown_arg(n, b.args.get(n)), "secret": is_secret_arg(n)}
            for n in names if arg_token(a, n, None) != arg_token(b, n, None)]
    return {
        "rows": rows,
        "args": args,
        "files": files.diff(manifests[0], manifests[1]).to_dict() if manifests is not None else None,
        "base_images": {"a": dict(a.base_images), "b": dict(b.base_images)},
    }


def _side(instruction: DockerfileInstruction | None, build: BuildFacts) -> dict[str, Any] | None:
    if instruction is None:
        return None
    return {"index": instruction.index, "instruction": instruction.text,
            "step": build.steps.get(instruction.index)}
