"""Train/validation/test splits over speakers of one or several corpora.

- `actor_split`: speaker-disjoint (the default): held-out speakers from every corpus.
- `kfold_splits`: leave-speakers-out cross-validation; every speaker is tested exactly once.
- `corpus_split`: leave-one-corpus-out: train on the other corpora, test on all of one.
- `random_split`: stratified by label; speakers overlap (the setting of the write-up we started from).

Held-out speakers are drawn per corpus and alternate between sexes where the sex is known, so that each part
has speakers of both sexes when the corpus has them. `--num_test_actors N` holds out N speakers of the largest
corpus and proportionally fewer (at least min(N, 2)) of each smaller one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.model_selection import train_test_split


class SplitError(ValueError):
    """A split that cannot be drawn from the data as given; the message says why."""


@dataclass
class Split:
    """Row indices of each part, and how they were drawn (written into every result file and the card)."""

    kind: str
    train: list[int]
    validation: list[int]
    test: list[int]
    seed: int
    actors: dict[str, list[str]] = field(default_factory=dict)
    fold: int | None = None
    test_corpus: str | None = None

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
        if self.kind == "corpus":
            return (
                f"leave-one-corpus-out (speaker- and corpus-independent): test corpus {self.test_corpus} "
                f"({len(self.actors['test'])} speakers), validation speakers {self.actors['validation']}; {sizes}, "
                f"seed {self.seed}"
            )
        fold = f"fold {self.fold}, " if self.fold is not None else ""
        return (
            f"actor-disjoint split ({fold}speaker-independent): test speakers {self.actors['test']}, "
            f"validation speakers {self.actors['validation']}; {sizes}, seed {self.seed}"
        )


class _Speakers:
    """The speakers of the data, grouped by corpus and sex."""

    def __init__(self, speakers: list[str], sexes: list[str], corpora: list[str]):
        if any(s is None or s == "" for s in speakers):
            raise SplitError(
                "speaker-independent splits need the speaker of every clip: give --actor_column_name, use a "
                "corpus reader that knows its speakers, or choose --split random"
            )
        self.rows = np.asarray(speakers, dtype=object)
        self.sex: dict[str, str] = {}
        self.corpus: dict[str, str] = {}
        for speaker, sex, corpus in zip(speakers, sexes, corpora):
            self.sex.setdefault(speaker, sex or "unknown")
            self.corpus.setdefault(speaker, corpus)
        self.corpora = sorted(set(self.corpus.values()))
        self.largest = max(self.count(c) for c in self.corpora)

    def of(self, corpus: str, exclude: set[str] = frozenset()) -> list[str]:
        return sorted(s for s, c in self.corpus.items() if c == corpus and s not in exclude)

    def count(self, corpus: str) -> int:
        return len(self.of(corpus))

    def scaled(self, n: int, corpus: str) -> int:
        """N for the largest corpus, proportionally fewer (at least min(N, 2)) for smaller ones."""
        return max(min(n, 2), round(n * self.count(corpus) / self.largest)) if n else 0

    def take(self, candidates: list[str], count: int, rng: np.random.Generator, what: str) -> list[str]:
        """`count` speakers, alternating between sexes (unknown sex as a group of its own), from a random start."""
        pools = [list(rng.permutation(sorted(s for s in candidates if self.sex[s] == sex))) for sex in ("male", "female", "unknown")]
        pools = [p for p in pools if p]
        order = list(rng.permutation(len(pools)))
        taken: list[str] = []
        while len(taken) < count and any(pools):
            for k in order:
                if pools[k] and len(taken) < count:
                    taken.append(str(pools[k].pop(0)))
        if len(taken) < count:
            raise SplitError(f"not enough speakers to hold out {count} for {what} ({len(candidates)} available)")
        return sorted(taken)

    def indices(self, speakers: list[str]) -> list[int]:
        return np.flatnonzero(np.isin(self.rows, list(speakers))).tolist()


def _split(kind: str, data: _Speakers, validation: list[str], test: list[str], seed: int, **extra) -> Split:
    """The split whose held-out parts are `validation` and `test`; every other speaker trains."""
    train = sorted(set(data.sex) - set(test) - set(validation))
    if not train:
        raise SplitError("no speakers left to train on: hold out fewer (--num_val_actors, --num_test_actors)")
    actors = {"train": train, "validation": sorted(validation), "test": sorted(test)}
    return Split(kind, data.indices(train), data.indices(validation), data.indices(test), seed, actors, **extra)


def actor_split(
    speakers: list[str], sexes: list[str], corpora: list[str], num_val: int, num_test: int, seed: int
) -> Split:
    """Speaker-disjoint train/validation/test, with held-out speakers from every corpus."""
    data = _Speakers(speakers, sexes, corpora)
    rng = np.random.default_rng(seed)
    test, validation = [], []
    for corpus in data.corpora:
        pool = data.of(corpus)
        n_test, n_val = data.scaled(num_test, corpus), data.scaled(num_val, corpus)
        if n_test + n_val >= len(pool):
            raise SplitError(
                f"corpus {corpus} has {len(pool)} speakers: too few to hold out {n_test} for test and {n_val} for "
                "validation and keep some for training (lower --num_test_actors/--num_val_actors)"
            )
        held = data.take(pool, n_test, rng, f"test ({corpus})")
        test += held
        validation += data.take([s for s in pool if s not in held], n_val, rng, f"validation ({corpus})")
    return _split("actor", data, validation, test, seed)


def kfold_splits(
    speakers: list[str], sexes: list[str], corpora: list[str], folds: int, num_val: int, seed: int
) -> list[Split]:
    """Leave-speakers-out cross-validation: every speaker is in exactly one fold's test part, and each fold
    tests speakers of every corpus (and of both sexes) where there are enough of them."""
    data = _Speakers(speakers, sexes, corpora)
    if not 2 <= folds <= len(data.sex) // 2:
        raise SplitError(f"--folds must be between 2 and {len(data.sex) // 2} for {len(data.sex)} speakers")
    rng = np.random.default_rng(seed)
    groups: list[list[str]] = [[] for _ in range(folds)]
    position = 0
    for corpus in data.corpora:
        for sex in ("male", "female", "unknown"):
            # Dealing each (corpus, sex) group round-robin, continuing where the last one stopped, keeps folds
            # the same size and mixed.
            for speaker in rng.permutation([s for s in data.of(corpus) if data.sex[s] == sex]):
                groups[position % folds].append(str(speaker))
                position += 1
    splits = []
    for k, test in enumerate(groups):
        validation = []
        for corpus in data.corpora:
            rest = data.of(corpus, exclude=set(test))
            n_val = min(data.scaled(num_val, corpus), max(len(rest) - 1, 0))
            validation += data.take(rest, n_val, rng, f"validation ({corpus}, fold {k})")
        splits.append(_split("kfold", data, validation, test, seed, fold=k))
    return splits


def corpus_split(
    speakers: list[str], sexes: list[str], corpora: list[str], test_corpus: str, num_val: int, seed: int
) -> Split:
    """Leave-one-corpus-out: all of `test_corpus` is the test part; validation speakers come from the others."""
    data = _Speakers(speakers, sexes, corpora)
    if test_corpus not in data.corpora:
        raise SplitError(f"--test_corpus {test_corpus!r} is not among the corpora of this run: {data.corpora}")
    others = [c for c in data.corpora if c != test_corpus]
    if not others:
        raise SplitError("--test_corpus needs at least two corpora (one to test, others to train on)")
    rng = np.random.default_rng(seed)
    test = data.of(test_corpus)
    validation = []
    for corpus in others:
        pool = data.of(corpus)
        validation += data.take(pool, min(data.scaled(num_val, corpus), len(pool) - 1), rng, f"validation ({corpus})")
    return _split("corpus", data, validation, test, seed, test_corpus=test_corpus)


def random_split(labels: list[int], val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Stratified by label, like the write-up we start from: the same speakers appear in every part."""
    indices = np.arange(len(labels))
    labels = np.asarray(labels)
    try:
        train_val, test = train_test_split(indices, test_size=test_fraction, stratify=labels, random_state=seed)
        train, validation = train_test_split(
            train_val,
            test_size=val_fraction / (1 - test_fraction),
            stratify=labels[train_val],
            random_state=seed,
        )
    except ValueError as err:  # a label too rare to appear in every part
        raise SplitError(f"--split random could not stratify these labels: {err}") from None
    return Split("random", sorted(train.tolist()), sorted(validation.tolist()), sorted(test.tolist()), seed)
