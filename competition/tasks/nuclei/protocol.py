"""A hidden split that mirrors another image set (pure): `--option holdout=mirrored`.

A split carved at random from the DSB training images has the training set's mix of image
types; Kaggle's stage-1 test set has another (more crowded fluorescence, larger nuclei, no
bright-field), and a model's score on a random split overstates its stage-1 score. The
mirrored split draws the hidden images so that

1. each image type (`appearance.TYPES`) has the share of the hidden split that it has in the
   reference set (largest remainders; no type gives more than `max_share` of its training
   images, so that every type is still trained on), and
2. within a type, the hidden images are the reference images' nearest training neighbours in
   appearance (size, nucleus scale, crowding, brightness, colour; each feature standardised
   over both sets): each reference image in turn takes one of its `k` nearest remaining
   training images of its type, drawn with the seed, until the type's quota is met.

Reference types with no training image of their type cannot be mirrored: `plan` reports them
and the other types share their place.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from competition.errors import SourceDataError
from competition.tasks.nuclei.appearance import TYPES, Appearance

DEFAULT_MAX_SHARE = 0.5
DEFAULT_NEIGHBOURS = 3


@dataclass
class Plan:
    """How many hidden images each type gets, and what could not be mirrored."""

    quotas: dict[str, int]
    reference_counts: dict[str, int]
    train_counts: dict[str, int]
    unmatched: dict[str, int] = field(default_factory=dict)  # reference types absent in train
    capped: list[str] = field(default_factory=list)  # types held to max_share

    def as_json(self) -> dict[str, Any]:
        return {"quotas": self.quotas, "reference_counts": self.reference_counts,
                "train_counts": self.train_counts, "unmatched": self.unmatched,
                "capped": self.capped}


def type_counts(appearances: dict[str, Appearance]) -> dict[str, int]:
    counts = Counter(a.type for a in appearances.values())
    return {t: counts.get(t, 0) for t in TYPES}


def _largest_remainders(shares: dict[str, float], total: int) -> dict[str, int]:
    raw = {t: s * total for t, s in shares.items()}
    out = {t: int(np.floor(v)) for t, v in raw.items()}
    left = total - sum(out.values())
    for t in sorted(raw, key=lambda t: (out[t] - raw[t], t))[:max(left, 0)]:
        out[t] += 1
    return out


def plan(train: dict[str, Appearance], reference: dict[str, Appearance], n_hidden: int,
         max_share: float = DEFAULT_MAX_SHARE) -> Plan:
    """The hidden split's count per type: the reference's mix, scaled down as a whole where a
    type has too few training images (the mix stays the reference's)."""
    if not reference:
        raise SourceDataError("the reference set to mirror has no images")
    train_counts, reference_counts = type_counts(train), type_counts(reference)
    unmatched = {t: n for t, n in reference_counts.items() if n and not train_counts[t]}
    matched = {t: n for t, n in reference_counts.items() if n and train_counts[t]}
    if not matched:
        raise SourceDataError("no image type of the reference set occurs in the training "
                              f"images (reference: {reference_counts})")
    total_ref = sum(matched.values())
    shares = {t: n / total_ref for t, n in matched.items()}
    caps = {t: int(np.floor(max_share * train_counts[t])) for t in matched}
    # The largest total whose quotas all fit under their caps.
    total, capped = n_hidden, list[str]()
    while total > 0:
        quotas = _largest_remainders(shares, total)
        over = [t for t in quotas if quotas[t] > caps[t]]
        if not over:
            break
        capped = sorted(set(capped) | set(over))
        total -= 1
    if total <= 0:
        raise SourceDataError("too few training images of the reference's types to hold any "
                              "out")
    return Plan(quotas={t: quotas.get(t, 0) for t in TYPES}, reference_counts=reference_counts,
                train_counts=train_counts, unmatched=unmatched, capped=capped)


def _standardiser(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = vectors.mean(axis=0)
    scale = vectors.std(axis=0)
    scale[scale == 0] = 1.0
    return mean, scale


def mirrored_holdout(train: dict[str, Appearance], reference: dict[str, Appearance],
                     n_hidden: int, rng: np.random.Generator,
                     max_share: float = DEFAULT_MAX_SHARE,
                     k: int = DEFAULT_NEIGHBOURS) -> tuple[list[str], Plan]:
    """The hidden training ids (sorted) and the plan they follow."""
    the_plan = plan(train, reference, n_hidden, max_share)
    train_ids, ref_ids = sorted(train), sorted(reference)
    vectors = np.array([train[i].vector() for i in train_ids]
                       + [reference[i].vector() for i in ref_ids])
    mean, scale = _standardiser(vectors)
    tv = (vectors[:len(train_ids)] - mean) / scale
    rv = (vectors[len(train_ids):] - mean) / scale
    train_type = np.array([train[i].type for i in train_ids])
    ref_type = np.array([reference[i].type for i in ref_ids])
    hidden: list[str] = []
    for t in TYPES:
        quota = the_plan.quotas[t]
        if not quota:
            continue
        candidates = list(np.flatnonzero(train_type == t))
        refs = np.flatnonzero(ref_type == t)
        taken: set[int] = set()
        while len(taken) < quota:
            for r in refs[rng.permutation(len(refs))]:
                if len(taken) == quota:
                    break
                left = [c for c in candidates if c not in taken]
                d = np.linalg.norm(tv[left] - rv[r], axis=1)
                nearest = [left[j] for j in np.argsort(d, kind="stable")[:k]]
                taken.add(nearest[int(rng.integers(len(nearest)))])
        hidden += [train_ids[c] for c in taken]
    return sorted(hidden), the_plan


def mix_table(sets: dict[str, dict[str, Appearance]]) -> list[dict[str, Any]]:
    """Rows per type: count and share of each named set (for reports)."""
    counts = {name: type_counts(apps) for name, apps in sets.items()}
    rows = []
    for t in TYPES:
        row: dict[str, Any] = {"type": t}
        for name, c in counts.items():
            total = sum(c.values())
            row[name] = c[t]
            row[f"{name}_share"] = round(c[t] / total, 4) if total else 0.0
        rows.append(row)
    return rows


FEATURES = ("diameter", "foreground", "clumped", "contrast", "texture", "brightness", "colour")


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    p10, p50, p90 = np.percentile(values, (10, 50, 90))
    return {"p10": round(float(p10), 3), "median": round(float(p50), 3),
            "p90": round(float(p90), 3)}


def compare(sets: dict[str, dict[str, Appearance]]) -> dict[str, Any]:
    """How named image sets differ: modality counts (the random split's strata), type mix,
    features (10th, 50th, 90th percentiles) per set and per type, image sizes one set has
    and the first lacks, and, where labels were measured, how the image-only diameter
    estimate compares with the labelled one (ratio estimate / labels per type)."""
    names = list(sets)
    report: dict[str, Any] = {
        "modalities": {n: dict(sorted(Counter(a.modality for a in apps.values()).items()))
                       for n, apps in sets.items()},
        "types": mix_table(sets),
        "features": {n: {f: _quantiles([getattr(a, f) for a in apps.values()])
                         for f in FEATURES} for n, apps in sets.items()},
        "features_per_type": {n: {t: {f: _quantiles([getattr(a, f) for a in apps.values()
                                                     if a.type == t]) for f in FEATURES}
                                  for t in TYPES if any(a.type == t for a in apps.values())}
                              for n, apps in sets.items()},
    }
    first = {(a.height, a.width) for a in sets[names[0]].values()}
    report["sizes_absent_from_" + names[0]] = {
        n: {f"{h}x{w}": c for (h, w), c in sorted(Counter(
            (a.height, a.width) for a in apps.values() if (a.height, a.width) not in first
        ).items())} for n, apps in list(sets.items())[1:]}
    ratios: dict[str, list[float]] = {}
    for apps in sets.values():
        for a in apps.values():
            if a.label_diameter:
                ratios.setdefault(a.type, []).append(a.diameter / a.label_diameter)
    if ratios:
        report["diameter_estimate_over_labels"] = {
            t: {**_quantiles(v), "n": len(v)} for t, v in sorted(ratios.items())}
    return report
