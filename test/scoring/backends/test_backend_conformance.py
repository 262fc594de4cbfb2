"""Every scoring backend against the interface it promises (``scoring.backends.protocol``).

Each case loads a backend through ``load_scorer`` and checks it from the
outside only: it satisfies the protocols; an episode session's score equals
the backend's own uncached score of the same frames after every extend; a
prefix curve equals the per-prefix uncached scores; the scores equal the
independent plain-transformers reference (``scoring_reference.py``); bad
instructions, bad frames and a missing model raise the protocol's errors;
``release()`` frees the model and may be called twice.

``CASES`` holds the transformers backend on the tiny random Qwen3-VL on the
CPU in float32. Another case is added from the environment, e.g. a GPU run
of a real model or a new backend::

    TOPREWARD_CONFORMANCE_MODEL=Qwen/Qwen3-VL-2B-Instruct  # required: hub id or directory
    TOPREWARD_CONFORMANCE_BACKEND=transformers             # default: transformers
    TOPREWARD_CONFORMANCE_DEVICE=cuda                      # default: cuda
    TOPREWARD_CONFORMANCE_DTYPE=float32                    # default: float32
    TOPREWARD_CONFORMANCE_TOL=1e-3                         # nats against the reference (default 1e-3)

The reference runs with transformers on the same device and dtype, so the
model must be loadable by transformers here (a server backend is checked
against the weights it serves).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from support.scoring_reference import INSTRUCTION, ReferenceModel, make_episode

from topreward_ros.scoring import (
    BACKEND_NAMES,
    EpisodeScoring,
    FrameError,
    InstructionError,
    ModelLoadError,
    ScorerConfig,
    ScoringBackend,
    load_scorer,
)

#: Frame counts of the checked prefixes: one frame, odd and even, past several groups.
FRAME_COUNTS = (1, 2, 3, 5, 8, 13)
#: A backend's session and uncached paths agree to this (nats).
SAME_BACKEND_TOL = 1e-5


@dataclass(frozen=True)
class Case:
    """One backend on one model, device and dtype."""

    backend: str
    model: str | None  # None: the tiny test model
    device: str = "cpu"
    dtype: str = "float32"
    reference_tol: float = 1e-5

    @property
    def id(self) -> str:
        return f"{self.backend}-{Path(self.model).name if self.model else 'tiny'}-{self.device}-{self.dtype}"


CASES: list[Case] = [Case("transformers", None)]
if os.environ.get("TOPREWARD_CONFORMANCE_MODEL"):
    CASES.append(
        Case(
            backend=os.environ.get("TOPREWARD_CONFORMANCE_BACKEND", "transformers"),
            model=os.environ["TOPREWARD_CONFORMANCE_MODEL"],
            device=os.environ.get("TOPREWARD_CONFORMANCE_DEVICE", "cuda"),
            dtype=os.environ.get("TOPREWARD_CONFORMANCE_DTYPE", "float32"),
            reference_tol=float(os.environ.get("TOPREWARD_CONFORMANCE_TOL", "1e-3")),
        )
    )


@dataclass
class Loaded:
    case: Case
    model: str
    backend: ScoringBackend

    def config(self, **changes: object) -> ScorerConfig:
        values = {
            "backend": self.case.backend,
            "model": self.model,
            "device": self.case.device,
            "dtype": self.case.dtype,
            "num_prefixes": 4,
            **changes,
        }
        return ScorerConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=CASES, ids=lambda case: case.id)
def loaded(request: pytest.FixtureRequest) -> Loaded:
    import torch

    torch.set_num_threads(2)
    case: Case = request.param
    model = case.model or str(request.getfixturevalue("tiny_model_dir"))
    config = ScorerConfig(backend=case.backend, model=model, device=case.device, dtype=case.dtype, num_prefixes=4)
    result = Loaded(case, model, load_scorer(config))
    yield result
    result.backend.release()


@pytest.fixture(scope="module")
def episode() -> tuple[list[np.ndarray], list[int]]:
    return make_episode(max(FRAME_COUNTS), seed=7)


@pytest.fixture(scope="module")
def uncached(loaded: Loaded, episode) -> dict[int, tuple[float, float]]:
    """The backend's own uncached (log p True, log p False) of every checked prefix."""
    frames, stamps = episode
    scores = {}
    for n in FRAME_COUNTS:
        score = loaded.backend.score(frames[:n], stamps[:n], INSTRUCTION)
        assert score.num_frames == n
        scores[n] = (score.log_prob_true, score.log_prob_false)
    return scores


def test_the_backend_name_is_registered(loaded: Loaded) -> None:
    assert loaded.case.backend in BACKEND_NAMES


def test_it_satisfies_the_protocols(loaded: Loaded) -> None:
    backend = loaded.backend
    assert isinstance(backend, ScoringBackend)
    assert backend.model_id == loaded.model
    session = backend.start_episode(INSTRUCTION)
    assert isinstance(session, EpisodeScoring)
    # The check is not vacuous: an object missing the members fails it.
    assert not isinstance(object(), ScoringBackend) and not isinstance(backend, EpisodeScoring)


def test_session_scores_equal_the_uncached_scores_after_every_extend(loaded: Loaded, episode, uncached) -> None:
    frames, stamps = episode
    session = loaded.backend.start_episode(INSTRUCTION)
    done = 0
    for n in FRAME_COUNTS:
        session.extend(frames[done:n], stamps[done:n])
        done = n
        score = session.score()
        assert score.num_frames == n == session.num_frames
        assert score.log_prob_true == pytest.approx(uncached[n][0], abs=SAME_BACKEND_TOL), n
        assert score.log_prob_false == pytest.approx(uncached[n][1], abs=SAME_BACKEND_TOL), n
        assert session.score() == score  # no new frames: the same score
    assert session.stamps_ns == tuple(stamps)
    assert session.cached_tokens >= 0 and session.cache_bytes >= 0


def test_one_frame_at_a_time_gives_the_same_scores(loaded: Loaded, episode, uncached) -> None:
    frames, stamps = episode
    session = loaded.backend.start_episode(INSTRUCTION)
    for n in range(1, max(FRAME_COUNTS) + 1):
        session.extend([frames[n - 1]], [stamps[n - 1]])
        score = session.score()
        if n in uncached:
            assert score.log_prob_true == pytest.approx(uncached[n][0], abs=SAME_BACKEND_TOL), n


def test_the_prefix_curve_equals_per_prefix_uncached_scores(loaded: Loaded, episode) -> None:
    frames, stamps = episode
    backend = loaded.backend
    for use_cache in (True, False):
        curve = backend.curve(frames, stamps, INSTRUCTION, num_prefixes=4, use_cache=use_cache)
        assert curve.prefix_lengths == (1, 5, 9, 13)
        assert curve.stamps_ns == tuple(stamps[n - 1] for n in curve.prefix_lengths)
        expected = [backend.score(frames[:n], stamps[:n], INSTRUCTION) for n in curve.prefix_lengths]
        np.testing.assert_allclose(
            curve.log_prob_true, [s.log_prob_true for s in expected], atol=SAME_BACKEND_TOL, rtol=0
        )
        np.testing.assert_allclose(
            curve.log_prob_false, [s.log_prob_false for s in expected], atol=SAME_BACKEND_TOL, rtol=0
        )
        assert curve.model_id == loaded.model


def test_scores_equal_the_independent_reference(loaded: Loaded, episode, uncached) -> None:
    frames, stamps = episode
    reference = ReferenceModel(loaded.model, loaded.case.device, loaded.case.dtype)
    try:
        for n in (1, 2, 5, 8):
            true, false = reference.log_probs(frames[:n], stamps[:n], INSTRUCTION)
            assert uncached[n][0] == pytest.approx(true, abs=loaded.case.reference_tol), n
            assert uncached[n][1] == pytest.approx(false, abs=loaded.case.reference_tol), n
    finally:
        del reference
        gc.collect()


def test_scores_depend_on_the_frames_and_the_instruction(loaded: Loaded, episode, uncached) -> None:
    frames, stamps = episode
    other, _ = make_episode(4, seed=2)
    base = uncached[3][0]
    assert loaded.backend.score(other[:3], stamps[:3], INSTRUCTION).log_prob_true != pytest.approx(base, abs=1e-4)
    assert loaded.backend.score(frames[:3], stamps[:3], "open the drawer").log_prob_true != pytest.approx(
        base, abs=1e-4
    )


@pytest.mark.parametrize("instruction", ["", "   ", "pick <|video_pad|> up", "done<|im_end|>", 7])
def test_a_bad_instruction_raises_instruction_error(loaded: Loaded, episode, instruction) -> None:
    frames, stamps = episode
    backend = loaded.backend
    with pytest.raises(InstructionError):
        backend.validate_instruction(instruction)
    with pytest.raises(InstructionError):
        backend.score(frames[:2], stamps[:2], instruction)
    with pytest.raises(InstructionError):
        backend.curve(frames[:2], stamps[:2], instruction)
    with pytest.raises(InstructionError):
        backend.start_episode(instruction)
    assert backend.validate_instruction(INSTRUCTION) == INSTRUCTION


def test_bad_frames_raise_frame_error(loaded: Loaded, episode) -> None:
    frames, stamps = episode
    frames, stamps = frames[:3], stamps[:3]
    backend = loaded.backend
    bad = {
        "no frames": ([], []),
        "a stamp missing": (frames, stamps[:2]),
        "float pixels": ([frames[0], frames[1].astype(np.float32), frames[2]], stamps),
        "another shape": ([frames[0], frames[1], frames[2][:32]], stamps),
        "grey": ([frames[0][..., 0]], stamps[:1]),
        "stamps not increasing": (frames, [stamps[0], stamps[0], stamps[2]]),
        "float stamps": (frames, [float(s) for s in stamps]),
    }
    for what, (f, s) in bad.items():
        with pytest.raises(FrameError):
            backend.score(f, s, INSTRUCTION)
        with pytest.raises(FrameError):
            backend.curve(f, s, INSTRUCTION)
        if f:
            with pytest.raises(FrameError):
                backend.start_episode(INSTRUCTION).extend(f, s)


def test_a_bad_extend_leaves_the_session_as_it_was(loaded: Loaded, episode, uncached) -> None:
    frames, stamps = episode
    session = loaded.backend.start_episode(INSTRUCTION)
    with pytest.raises(FrameError):
        session.score()  # nothing to score yet
    session.extend(frames[:2], stamps[:2])
    with pytest.raises(FrameError):
        session.extend(frames[2:3], [stamps[1]])  # not after the last stamp
    with pytest.raises(FrameError):
        session.extend([np.zeros((32, 32, 3), np.uint8)], [stamps[2]])  # another shape
    assert session.num_frames == 2 and session.stamps_ns == tuple(stamps[:2])
    session.extend(frames[2:3], stamps[2:3])
    assert session.score().log_prob_true == pytest.approx(uncached[3][0], abs=SAME_BACKEND_TOL)


def test_max_frames_must_be_positive(loaded: Loaded) -> None:
    with pytest.raises(ValueError):
        loaded.backend.start_episode(INSTRUCTION, max_frames=0)


def test_a_missing_model_raises_model_load_error(loaded: Loaded, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model"):
        load_scorer(loaded.config(model=str(missing)))


def test_release_frees_the_model_and_may_be_called_twice(loaded: Loaded, episode) -> None:
    import torch

    frames, stamps = episode
    cuda = loaded.case.device.startswith("cuda")
    before = torch.cuda.memory_allocated() if cuda else 0
    backend = load_scorer(loaded.config())
    session = backend.start_episode(INSTRUCTION)
    session.extend(frames[:4], stamps[:4])
    session.score()
    held = torch.cuda.memory_allocated() if cuda else 0
    backend.release()
    backend.release()
    if cuda:
        assert torch.cuda.memory_allocated() - before < (held - before) / 10
    assert session.cache_bytes == 0
    with pytest.raises(ModelLoadError):
        backend.score(frames[:2], stamps[:2], INSTRUCTION)
    with pytest.raises(ModelLoadError):
        backend.start_episode(INSTRUCTION)
    with pytest.raises(ModelLoadError):
        session.extend(frames[4:5], stamps[4:5])
        session.score()


def test_an_unknown_backend_is_refused_naming_the_known_ones(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="backend must be one of transformers, got 'no-such-backend'"):
        ScorerConfig(model=str(tiny_model_dir), backend="no-such-backend")
    from topreward_ros.scoring.backends.registry import backend_loader

    with pytest.raises(ModelLoadError, match="unknown scoring backend 'no-such-backend'; known backends: transformers"):
        backend_loader("no-such-backend")


def test_a_backend_that_cannot_be_imported_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from topreward_ros.scoring import BackendUnavailableError
    from topreward_ros.scoring.backends import registry

    monkeypatch.setitem(registry.BACKENDS, "absent", "topreward_ros.scoring.backends.absent_backend:load")
    with pytest.raises(BackendUnavailableError, match="scoring backend 'absent' cannot be imported") as info:
        registry.backend_loader("absent")
    assert isinstance(info.value, ModelLoadError) and isinstance(info.value.__cause__, ImportError)
    assert registry.backend_loader("transformers").__module__.endswith("transformers_qwen.loader")
