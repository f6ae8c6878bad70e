"""`competition prepare KIND`, and the steps every task's preparer shares: the staging
directory, splits, Usage, the manifest, competition.yaml and the README's rules."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from competition.errors import SourceDataError

DEFAULT_PUBLIC_FRACTION = 1 / 3


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


def write_manifest(root: Path) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
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
                     public_fraction: float, files: dict[str, str], counts: dict[str, int]
                     ) -> bytes:
    """The organizer-editable settings; no timestamps, so equal inputs give equal bytes."""
    from competition.configs import CompetitionConfig, FilesConfig, RulesConfig

    return CompetitionConfig(
        name=name, title=title, kind=kind, task=task, seed=seed, counts=counts,
        files=FilesConfig(**files),
        rules=RulesConfig(public_fraction=round(public_fraction, 6))).to_yaml()


RULES = """## Rules
- Submissions per team per UTC day: 5 (invalid or failed submissions do not count).
- Final selections: 2. Unless you choose them, your best public submissions are used.
- The leaderboard shows the **public** score, computed on {public} of the {test} hidden test
  {items}. The final ranking uses the **private** score on the other {private}, revealed after
  the deadline. Ties are broken by the earlier submission.
- The organizer may change these defaults; `competition info DIR` shows the rules in force.
- Using the hidden labels, or the public source data they were taken from, is not allowed.
"""


def readme_rules(counts: dict[str, int], items: str) -> str:
    """The rules section of a participant's README."""
    return RULES.format(public=counts["public"], test=counts["test"],
                        private=counts["test"] - counts["public"], items=items)


def prepare(kind: str, out: Path, source: Path | None = None, seed: int = 0,
            public_fraction: float = DEFAULT_PUBLIC_FRACTION,
            test_fraction: float | None = None, force: bool = False,
            name: str | None = None) -> Path:
    """Prepare a competition of `kind` in `out`; all or nothing.

    The name defaults to the kind (not the directory), so the same inputs give the same bytes
    wherever they are written. A synthetic kind (a demo) writes its source in the real layout
    into a temporary folder first and runs the real preparer on it.
    """
    from competition.tasks import find_source

    if not 0 < public_fraction < 1:
        raise SourceDataError(f"public fraction {public_fraction} must lie strictly in (0, 1)")
    _, spec = find_source(kind)
    options = {**spec.options, **({} if test_fraction is None else
                                  {"test_fraction": test_fraction})}
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
        return out
    with tempfile.TemporaryDirectory() as tmp, staged_output(out, force) as stage:
        spec.synthetic(Path(tmp), seed)
        spec.prepare(Path(tmp), stage, seed, public_fraction, name=name or kind, kind=kind,
                     **options)
    return out
