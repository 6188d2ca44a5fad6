"""Train/validation/test splits: actor-disjoint (default), stratified random, and leave-actors-out k-fold."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.model_selection import train_test_split


@dataclass
class Split:
    """Row indices of each part, and how they were drawn (written into every result file and the card)."""

    kind: str
    train: list[int]
    validation: list[int]
    test: list[int]
    seed: int
    actors: dict[str, list[int]] = field(default_factory=dict)
    fold: int | None = None

    @property
    def speakers_overlap(self) -> bool:
        return self.kind == "random"

    def describe(self) -> dict:
        info = {k: v for k, v in asdict(self).items() if k not in ("train", "validation", "test")}
        info["sizes"] = {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}
        info["speakers_overlap"] = self.speakers_overlap
        info["summary"] = self.summary()
        return info

    def summary(self) -> str:
        sizes = f"{len(self.train)}/{len(self.validation)}/{len(self.test)} clips (train/validation/test)"
        if self.kind == "random":
            return f"stratified random split, speakers overlap between train and test; {sizes}, seed {self.seed}"
        fold = f"fold {self.fold}, " if self.fold is not None else ""
        return (
            f"actor-disjoint split ({fold}speaker-independent): test actors {self.actors['test']}, "
            f"validation actors {self.actors['validation']}; {sizes}, seed {self.seed}"
        )


def _by_sex(actor_sex: dict[int, str], rng: np.random.Generator) -> tuple[list[int], list[int]]:
    male = sorted(a for a, s in actor_sex.items() if s == "male")
    female = sorted(a for a, s in actor_sex.items() if s == "female")
    if not male or not female or len(male) + len(female) != len(actor_sex):
        raise ValueError("actor splits need the sex (male/female) of every actor, and both sexes present")
    return list(rng.permutation(male)), list(rng.permutation(female))


def _take_balanced(male: list[int], female: list[int], count: int, rng: np.random.Generator) -> list[int]:
    """Takes `count` actors, half of each sex (the odd one from a random sex), removing them from the pools."""
    if count < 2:
        raise ValueError("each held-out part needs at least 2 actors, so that both sexes are in it")
    n_male = count // 2 + (count % 2 if rng.random() < 0.5 else 0)
    n_female = count - n_male
    if n_male > len(male) or n_female > len(female):
        raise ValueError(f"not enough actors of each sex to hold out {count}")
    taken = male[:n_male] + female[:n_female]
    del male[:n_male], female[:n_female]
    return sorted(int(a) for a in taken)


def _rows(actors_of_rows: np.ndarray, actors: list[int]) -> list[int]:
    return np.flatnonzero(np.isin(actors_of_rows, actors)).tolist()


def actor_split(actors: list[int], sexes: list[str], num_val: int, num_test: int, seed: int) -> Split:
    actor_sex = dict(zip(actors, sexes))
    rng = np.random.default_rng(seed)
    male, female = _by_sex(actor_sex, rng)
    test = _take_balanced(male, female, num_test, rng)
    validation = _take_balanced(male, female, num_val, rng)
    train = sorted(int(a) for a in male + female)
    if len(train) < 2:
        raise ValueError("no actors left to train on")
    rows = np.asarray(actors)
    return Split(
        "actor",
        _rows(rows, train),
        _rows(rows, validation),
        _rows(rows, test),
        seed,
        {"train": train, "validation": validation, "test": test},
    )


def kfold_splits(actors: list[int], sexes: list[str], folds: int, num_val: int, seed: int) -> list[Split]:
    """Leave-actors-out cross-validation: every actor is in exactly one fold's test part."""
    actor_sex = dict(zip(actors, sexes))
    if not 2 <= folds <= len(actor_sex) // 2:
        raise ValueError(f"--folds must be between 2 and {len(actor_sex) // 2} for {len(actor_sex)} actors")
    rng = np.random.default_rng(seed)
    male, female = _by_sex(actor_sex, rng)
    # Dealing each sex round-robin keeps both sexes in every fold.
    groups = [sorted(int(a) for a in male[k::folds] + female[k::folds]) for k in range(folds)]
    rows = np.asarray(actors)
    splits = []
    for k, test in enumerate(groups):
        rest_m = [a for a in male if a not in test]
        rest_f = [a for a in female if a not in test]
        validation = _take_balanced(rest_m, rest_f, num_val, rng)
        train = sorted(int(a) for a in rest_m + rest_f)
        splits.append(
            Split(
                "kfold",
                _rows(rows, train),
                _rows(rows, validation),
                _rows(rows, test),
                seed,
                {"train": train, "validation": validation, "test": test},
                fold=k,
            )
        )
    return splits


def random_split(labels: list[int], val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Stratified by label, like the write-up we start from: the same speakers appear in every part."""
    indices = np.arange(len(labels))
    labels = np.asarray(labels)
    train_val, test = train_test_split(indices, test_size=test_fraction, stratify=labels, random_state=seed)
    train, validation = train_test_split(
        train_val,
        test_size=val_fraction / (1 - test_fraction),
        stratify=labels[train_val],
        random_state=seed,
    )
    return Split("random", sorted(train.tolist()), sorted(validation.tolist()), sorted(test.tolist()), seed)
