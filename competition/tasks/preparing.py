"""`competition prepare KIND`, and the steps every task's preparer shares: the staging
directory, splits, Usage, the manifest, competition.yaml and the README's rules."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import SourceDataError


class Staging:
    """Files written under a temporary directory that becomes the competition on success."""

    def __init__(self, root: Path):
        self.root = root

    def write(self, rel: str, data: bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def copy(self, rel: str, source: Path) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        return path


@contextlib.contextmanager
def staged_output(out: Path, force: bool = False) -> Iterator[Staging]:
    """Write into a sibling temporary directory, then rename it to `out` in one step.

    A failure (bad source data, a crash, Ctrl-C) leaves no half-written competition behind.
    """
    out = Path(out).resolve()
    if out.exists() and not force:
        raise SourceDataError(f"{out} already exists; choose another --out or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield Staging(tmp)
        write_manifest(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Left out of the manifest: itself, and competition.yaml, the organizer's settings (edited
# after `prepare`, and carrying the competition's id, drawn anew each time). The manifest
# lists the prepared data, which the seed and the source alone decide.
UNLISTED = ("manifest.json", "competition.yaml")


def write_manifest(root: Path) -> None:
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and p.relative_to(root).as_posix() not in UNLISTED)
    manifest = {"algorithm": "sha256",
                "files": {p.relative_to(root).as_posix(): sha256(p) for p in files}}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def split_test(ids: list[str], test_fraction: float, rng: np.random.Generator,
               strata: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Seeded train/test split of sorted ids, stratified when `strata` is given."""
    if not 0 < test_fraction < 1:
        raise SourceDataError(f"test fraction {test_fraction} must lie strictly between 0 and 1")
    ids = sorted(ids)
    groups: dict[str, list[str]] = {}
    for k, i in enumerate(ids):
        groups.setdefault(strata[k] if strata else "", []).append(i)
    test: list[str] = []
    for name in sorted(groups):
        members = groups[name]
        n = int(round(len(members) * test_fraction))
        if len(members) >= 2:
            n = min(max(n, 1), len(members) - 1)
        test += [members[k] for k in rng.permutation(len(members))[:n]]
    test_set = set(test)
    train = [i for i in ids if i not in test_set]
    if not train or not test:
        raise SourceDataError(f"{len(ids)} labelled item(s) are too few to split into train and "
                              "test")
    return train, sorted(test)


def assign_usage(ids: list[str], public_fraction: float,
                 rng: np.random.Generator) -> dict[str, str]:
    """Kaggle-style Usage: a seeded `public_fraction` of the test items are Public."""
    ids = sorted(ids)
    n_public = int(round(len(ids) * public_fraction))
    if len(ids) >= 2:
        n_public = min(max(n_public, 1), len(ids) - 1)
    public = {ids[k] for k in rng.permutation(len(ids))[:n_public]}
    return {i: ("Public" if i in public else "Private") for i in ids}


def competition_yaml(*, name: str, kind: str, task: str, title: str, seed: int,
                     public_fraction: float, files: dict[str, str], counts: dict[str, int],
                     max_submission_mb: float | None = None) -> bytes:
    """The organizer-editable settings; no timestamps, so equal inputs give equal bytes
    (`prepare` adds the competition's id afterwards).

    `max_submission_mb`: the upload limit this competition's submissions need, where the
    default rule's is too small (e.g. a label volume); the board and the portal read it."""
    from competition.configs import CompetitionConfig, FilesConfig, RulesConfig

    limit = {} if max_submission_mb is None else {"max_submission_mb": max_submission_mb}
    rules = RulesConfig.model_validate({"public_fraction": round(public_fraction, 6), **limit})
    return CompetitionConfig(
        name=name, title=title, kind=kind, task=task, seed=seed, counts=counts,
        files=FilesConfig(**files), rules=rules).to_yaml()


RULES = """## Rules
- Submissions per team per UTC day: {daily} (invalid or failed submissions do not count).
- Final selections: {final}. Unless you choose them, your best public submissions are used.
- The leaderboard shows the **public** score, computed on {public} of the {test} hidden test
  {items}. The final ranking uses the **private** score on the other {private}, revealed after
  the deadline. Ties are broken by the earlier submission.
- The organizer may change these defaults: the portal's competition page shows the rules in
  force (`competition info DIR` in a terminal).
- Using the hidden labels, or the public source data they were taken from, is not allowed.
"""


def readme_rules(counts: dict[str, int], items: str) -> str:
    """The rules section of a participant's README (with the rules' defaults, which a new
    competition has)."""
    from competition.configs import RulesConfig

    defaults = RulesConfig()
    return RULES.format(daily=defaults.daily_limit, final=defaults.final_selections,
                        public=counts["public"], test=counts["test"],
                        private=counts["test"] - counts["public"], items=items)


# --- code competitions (issue 32): `competition prepare KIND --submission code|both` ------

CODE_README = """
## Code submissions
{what} Submit a zip of an entry folder (`entry.py` with `fit(task, train, config,
on_epoch=None)` and `predict(task, model, inputs, config)`, and `config.yaml` starting with
`tasks: [{task}]`): zip the folder with your file manager ("Compress") and upload it on the
portal's Submit page (in a terminal: `competition pack FOLDER --out entry.zip`, then
`competition submit`). The harness unpacks it,
calls `fit` on this folder's training data (or `load`s a fitted model the zip carries in
`model/`, where the entry defines `load(task, folder, config)`), then `predict` on the hidden
test inputs, and scores the file it writes. `sample_entry/` is the smallest entry that works:
copy it to start.

The entry runs without network, sees only this folder and the test inputs (read-only), and
is stopped at the competition's limits: the portal's competition page (or `competition info
DIR`) shows them (wall time, CPU time, memory, processes, disk and log). A run that passes a limit,
exits with an error, writes no file or an invalid one ends `failed` with its cause and the
end of its output, and counts toward the daily limit.
"""


def make_code_competition(root: Path, task: Any, submission: str) -> None:
    """Turn a competition just prepared under `root` (a staging folder) into one that takes
    code (`code`: the test inputs move from public/ to private/inputs/, so they are never
    published) or code beside files (`both`: they stay public); the public README says so,
    beside a sample entry."""
    from competition.configs import CompetitionConfig, load

    if submission == "files":
        return
    if submission not in ("code", "both"):
        raise SourceDataError(f"--submission {submission!r}: expected files, code or both")
    if not task.test_inputs:
        raise SourceDataError(f"the {task.name} task names no test inputs, so it cannot "
                              "run code submissions; use --submission files")
    config = load(CompetitionConfig, root / "competition.yaml")
    config = config.model_copy(update={"submission": submission})
    if submission == "code":
        for rel in task.test_inputs:
            source, target = root / "public" / rel, root / "private" / "inputs" / rel
            if not source.exists():
                raise SourceDataError(f"the {task.name} preparer wrote no public/{rel}")
            target.parent.mkdir(parents=True, exist_ok=True)
            source.rename(target)
    for name, text in task.sample_entry().items():
        target = root / "public" / "sample_entry" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    what = ("This competition takes code, not prediction files: the test inputs are not "
            "published." if submission == "code" else
            "This competition takes prediction files or code.")
    readme = root / "public" / "README.md"
    readme.write_text(readme.read_text() + CODE_README.format(what=what, task=task.name))
    (root / "competition.yaml").write_bytes(config.to_yaml())


# --- preparer options (issue 18): `competition prepare KIND --option key=value` -------------
# The harness's own arguments of a preparer: never options.
_FIXED_PARAMETERS = ("source", "stage", "seed", "public_fraction", "name", "kind")


def parse_options(items: list[str]) -> dict[str, Any]:
    """`key=value` strings (the CLI's repeatable `--option`) as keyword options; values are
    read as YAML (`0.25` a number, `[1, 2]` a list, `mirrored` a string), as `--set` reads
    them for entries."""
    import yaml

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise SourceDataError(f"--option {item!r}: expected key=value (e.g. "
                                  "holdout=mirrored)")
        try:
            options[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            options[key] = value
    return options


def preparer_options(preparer: Callable[..., Any]) -> list[str]:
    """The keyword options a preparer takes (its parameters beyond the harness's own)."""
    parameters = inspect.signature(preparer).parameters.values()
    return sorted(p.name for p in parameters
                  if p.name not in _FIXED_PARAMETERS
                  and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def check_options(kind: str, preparer: Callable[..., Any], options: dict[str, Any]) -> None:
    """Unknown options are an error naming the kind's options (and the closest one); their
    values are the preparer's to check."""
    known = preparer_options(preparer)
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SourceDataError(f"--option {key}: {kind} has no such option{hint}; its "
                                  "options: " + (", ".join(known) or "none"))


def prepare(kind: str, out: Path, *, source: Path | None = None, seed: int = 0,
            public_fraction: float | None = None,
            test_fraction: float | None = None, force: bool = False,
            name: str | None = None, synthetic: str | None = None,
            options: dict[str, Any] | None = None, submission: str = "files") -> Path:
    """Prepare a competition of `kind` in `out`; all or nothing.

    The name defaults to the kind (not the directory), so the same inputs give the same bytes
    wherever they are written, competition.yaml's `id` aside: each prepared competition gets a
    new one, so that two folders of one kind never share MLflow experiments or runs. A
    synthetic kind (a demo) writes its source in the real layout into a temporary folder
    first and runs the real preparer on it; `synthetic` (`--synthetic
    SPEC`, e.g. a volume's size) is handed to its writer, which refuses what it does not
    understand. `options` (`--option key=value`) reach the preparer as keyword options; a name
    it does not take is an error here, a value it cannot use is the preparer's error.
    `public_fraction` None: the rules' default (RulesConfig.public_fraction).
    `submission`: "files", "code" or "both" (see `make_code_competition`).
    """
    from competition.configs import RulesConfig
    from competition.tasks import all_sources, find_source

    if public_fraction is None:
        public_fraction = float(RulesConfig.model_fields["public_fraction"].default)
    if not 0 < public_fraction < 1:
        raise SourceDataError(f"public fraction {public_fraction} must lie strictly in (0, 1)")
    task, spec = find_source(kind)
    if synthetic is not None and spec.synthetic is None:
        demos = sorted(k for k, (t, s) in all_sources().items()
                       if t.name == task.name and s.synthetic is not None)
        raise SourceDataError(f"{kind} is prepared from --source DIR; --synthetic applies to "
                              "synthetic kinds" + (f" ({', '.join(demos)})" if demos else ""))
    check_options(kind, spec.prepare, options or {})
    options = {**spec.options, **({} if test_fraction is None else
                                  {"test_fraction": test_fraction}), **(options or {})}
    out = Path(out)
    if spec.synthetic is None:
        if source is None:
            raise SourceDataError(f"{kind} needs --source DIR (the downloaded data set)")
        source = Path(source)
        if not source.is_dir():
            raise SourceDataError(f"{source}: source folder not found")
        with staged_output(out, force) as stage:
            spec.prepare(source, stage, seed, public_fraction, name=name or kind, kind=kind,
                         **options)
            make_code_competition(stage.root, task, submission)
            _new_id(stage.root)
        return out
    with tempfile.TemporaryDirectory() as tmp, staged_output(out, force) as stage:
        # The spec is passed only when given: writers of other packages may take none.
        if synthetic is None:
            spec.synthetic(Path(tmp), seed)
        else:
            spec.synthetic(Path(tmp), seed, spec=synthetic)
        spec.prepare(Path(tmp), stage, seed, public_fraction, name=name or kind, kind=kind,
                     **options)
        make_code_competition(stage.root, task, submission)
        _new_id(stage.root)
    return out


def _new_id(root: Path) -> None:
    """A fresh id, even if the preparer wrote one: a competition prepared again (--force) is
    a new competition, whose submissions start at 1 again."""
    from competition.configs import CompetitionConfig, load, new_competition_id

    path = root / "competition.yaml"
    config = load(CompetitionConfig, path)
    path.write_bytes(config.model_copy(update={"id": new_competition_id()}).to_yaml())
