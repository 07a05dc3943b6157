"""Training augmentation: crop/flip, timm's RandAugment law batched on tensors, mixup/cutmix, all from one generator."""

import contextlib
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from scipy import stats
from timm.data import auto_augment
from timm.data.mixup import Mixup

from vitwork import randaugment
from vitwork.augment import MixupCutmix, TrainAugment, random_crop_flip
from vitwork.config import ConfigError, validate_config
from vitwork.randaugment import (
    GEOMETRIC_OPERATIONS,
    NO_OPERATION,
    OPERATION_INDEX,
    TIMM_OPERATIONS,
    TimmDraw,
    TimmRandAugment,
    apply_timm_operations,
    timm_arguments,
    timm_fill,
)

REPO = Path(__file__).resolve().parents[1]
FILL = (131, 126, 114)  # CIFAR-100's mean in 0..255, as timm's transforms_imagenet_train makes img_mean
TIMM_HPARAMS = {"translate_const": 14, "img_mean": FILL}  # transforms_imagenet_train's for 32 x 32 images


@pytest.fixture
def global_rng_restored():
    """Lets a test drive timm's reference through Python's and numpy's global RNG, restoring both after it."""
    states = random.getstate(), np.random.get_state()
    yield
    random.setstate(states[0])
    np.random.set_state(states[1])


def varied_images(n: int = 16, size: int = 32) -> torch.Tensor:
    """uint8 NCHW test images: smooth fields with noise, plus a flat image, a flat channel, a narrow range, pure noise."""
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.uniform(0, 255, (n, 3, 6, 6))).float()
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    images = (images + torch.from_numpy(rng.normal(0, 12, (n, 3, size, size))).float()).clamp(0, 255).round().to(torch.uint8)
    images[1] = 77
    images[2, 0] = 10
    images[3] = torch.from_numpy(rng.integers(100, 140, (3, size, size)))
    images[4] = torch.from_numpy(rng.integers(0, 256, (3, size, size)))
    return images


@contextlib.contextmanager
def timm_negating(negate: bool):
    """Fixes timm's _randomly_negate (negative when random.random() > 0.5) inside the block."""
    saved = random.random
    random.random = (lambda: 0.9) if negate else (lambda: 0.1)
    try:
        yield
    finally:
        random.random = saved


def timm_operation(images: torch.Tensor, name: str, magnitude: float, negate: bool, resample) -> torch.Tensor:
    """timm's AugmentOp at a fixed magnitude, sign and filter on each image as a PIL image (uint8 NCHW back)."""
    hparams = TIMM_HPARAMS | {"magnitude_std": 0, "interpolation": resample}
    op = auto_augment.AugmentOp(name, prob=1.0, magnitude=magnitude, hparams=hparams)
    with timm_negating(negate):
        out = [np.asarray(op(Image.fromarray(image.permute(1, 2, 0).numpy()))) for image in images]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def our_operation(images: torch.Tensor, name: str, magnitude: float, negate: bool, bicubic: bool) -> torch.Tensor:
    n, _, h, w = images.shape
    op = torch.full((n,), OPERATION_INDEX[name])
    argument = timm_arguments(op, torch.full((n,), magnitude, dtype=torch.float64), torch.full((n,), negate), h, w)
    return apply_timm_operations(images, op, argument, torch.full((n,), bicubic), FILL)


def test_crop_flip_is_per_image_and_seeded():
    images = torch.arange(4 * 3 * 8 * 8, dtype=torch.uint8).view(4, 3, 8, 8)
    assert torch.equal(random_crop_flip(images, 0, False, torch.Generator().manual_seed(0)), images)
    a = random_crop_flip(images, 2, True, torch.Generator().manual_seed(1))
    b = random_crop_flip(images, 2, True, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == images.shape
    # each output is a shifted window of its own padded input: its non-zero pixels come from that image
    for i in range(4):
        values = set(a[i].flatten().tolist()) - {0}
        assert values <= set(images[i].flatten().tolist())


def test_level_arguments_are_timms():
    magnitudes = [0.0, 0.3, 1.0, 2.49, 2.5, 3.3, 5.0, 7.5, 8.71, 9.0, 9.99, 10.0]
    for name in TIMM_OPERATIONS:
        level_to_arg = auto_augment.LEVEL_TO_ARG[name]
        for negate in (False, True):
            op = torch.full((len(magnitudes),), OPERATION_INDEX[name])
            ours = timm_arguments(op, torch.tensor(magnitudes, dtype=torch.float64), torch.full_like(op, negate, dtype=torch.bool), 32, 32)
            with timm_negating(negate):
                expected = [level_to_arg(m, TIMM_HPARAMS)[0] if level_to_arg else 0.0 for m in magnitudes]
            if name.startswith("Translate"):
                expected = [pct * 32 for pct in expected]  # timm's translate_*_rel turns the fraction into pixels
            assert ours.tolist() == expected, name


@pytest.mark.parametrize("name", TIMM_OPERATIONS)
def test_every_operation_matches_timm_on_pil_images(name):
    images = varied_images()
    geometric = name in GEOMETRIC_OPERATIONS
    filters = [(Image.Resampling.BILINEAR, False), (Image.Resampling.BICUBIC, True)] if geometric else [(Image.Resampling.BICUBIC, False)]
    for magnitude in (1.0, 3.0, 5.5, 9.0, 10.0):
        if name == "Posterize" and magnitude < 2.5:
            continue  # timm asks PIL for 0 bits there, which Pillow 13 refuses (see the next test)
        for negate in (False, True) if geometric else (False,):
            for resample, bicubic in filters:
                expected = timm_operation(images, name, magnitude, negate, resample)
                ours = our_operation(images, name, magnitude, negate, bicubic)
                case = f"{name} m{magnitude} negate={negate} bicubic={bicubic}"
                differs = ours != expected
                assert differs.float().mean() <= 0.01, case
                if not geometric:
                    assert ((ours.int() - expected.int()).abs() <= 2).all(), case
                    continue
                # a differing pixel of a geometric operation is PIL's value one pixel away
                padded = torch.nn.functional.pad(expected.int(), (1, 1, 1, 1), value=-999)
                h, w = images.shape[-2:]
                shifted = torch.stack([padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
                assert ((shifted - ours.int()).abs().amin(0) <= 1)[differs].all(), case


def test_posterize_below_magnitude_2_5_keeps_no_bits():
    # timm's level: int(magnitude / 10 * 4) bits, 0 below 2.5, which older Pillow turned into black (mask 0)
    images = varied_images()
    assert not our_operation(images, "Posterize", 2.4, False, False).any()
    assert torch.equal(our_operation(images, "Posterize", 2.5, False, False), images & 0x80)


def test_no_operation_leaves_images_and_masked_batch_path_equals_subsets(monkeypatch):
    images = varied_images(48)
    n = len(images)
    none = torch.full((n,), NO_OPERATION)
    assert torch.equal(apply_timm_operations(images, none, torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.bool), FILL), images)
    augment = TimmRandAugment(2, 9, 1.0, FILL)
    draw = augment.draw(n, torch.Generator().manual_seed(3))
    applied = torch.where(draw.applied, draw.op, NO_OPERATION)
    assert set(applied.flatten().tolist()) == {NO_OPERATION, *range(len(TIMM_OPERATIONS))}  # every operation is used
    subsets = augment.apply(images, draw)
    # the accelerator path transforms the whole batch in every stage and keeps each image's own result
    monkeypatch.setattr(randaugment, "_transforms_subsets", lambda device: False)
    assert torch.equal(augment.apply(images, draw), subsets)
    # the images whose slots were both skipped (a quarter) are unchanged
    skipped = ~draw.applied.any(1)
    assert torch.equal(subsets[skipped], images[skipped]) and skipped.any() and not skipped.all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the cluster's path)")
def test_cuda_augmentation_equals_cpu_and_never_waits_for_the_device(training):
    images = varied_images(48)
    augment = TimmRandAugment(2, 9, 1.0, FILL)
    draw = augment.draw(len(images), torch.Generator().manual_seed(3))
    on_cuda = TimmDraw(*(t.cuda() for t in (draw.op, draw.applied, draw.magnitude, draw.negate, draw.bicubic)))
    assert torch.equal(augment.apply(images.cuda(), on_cuda).cpu(), augment.apply(images, draw))
    train_augment = TrainAugment(training, num_classes=10, mean=[0.5] * 3, std=[0.25] * 3)
    batch = images.permute(0, 2, 3, 1).contiguous().cuda()
    labels = (torch.arange(len(images)) % 10).cuda()
    generator = torch.Generator(device="cuda").manual_seed(0)
    train_augment(batch, labels, generator)  # the first batch copies the constants to the device
    torch.cuda.set_sync_debug_mode("error")
    try:
        x, targets = train_augment(batch, labels, generator)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert x.is_cuda and targets.shape == (len(images), 10)


def test_draws_follow_timms_law():
    n, slots = 20000, 2
    draw = TimmRandAugment(slots, 9, 1.0, FILL).draw(n, torch.Generator().manual_seed(0))
    total = n * slots
    # operations uniform over the 15 (with replacement: both slots of an image agree at chance level)
    counts = torch.bincount(draw.op.flatten(), minlength=len(TIMM_OPERATIONS)).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3
    same = (draw.op[:, 0] == draw.op[:, 1]).sum().item()
    assert stats.binomtest(same, n, 1 / len(TIMM_OPERATIONS)).pvalue > 1e-3
    for flags in (draw.applied, draw.negate, draw.bicubic):  # each a fair coin per application
        assert stats.binomtest(int(flags.sum()), total, 0.5).pvalue > 1e-3
    # magnitude per application: N(9, 1) clipped to [0, 10], so an atom at 10 and a truncated normal below it
    magnitude = draw.magnitude.flatten().numpy()
    at_top = magnitude == 10.0
    assert stats.binomtest(int(at_top.sum()), total, stats.norm.sf(1.0)).pvalue > 1e-3
    assert stats.kstest(magnitude[~at_top], stats.truncnorm(-9.0, 1.0, loc=9.0, scale=1.0).cdf).pvalue > 1e-3
    # timm's mstd above 100: uniform in [0, M]; mstd 0: always M
    uniform = TimmRandAugment(1, 7, 1000.0, FILL).draw(5000, torch.Generator().manual_seed(1)).magnitude.flatten().numpy()
    assert stats.kstest(uniform, stats.uniform(0, 7).cdf).pvalue > 1e-3
    assert (TimmRandAugment(1, 7, 0.0, FILL).draw(100, torch.Generator()).magnitude == 7).all()


def test_real_cifar100_change_distribution_matches_timms(real_cifar100, global_rng_restored):
    # 10 test images per class, read as PIL reads them
    images = np.stack(
        [np.asarray(Image.open(path).convert("RGB")) for folder in sorted((real_cifar100 / "test").iterdir()) for path in sorted(folder.iterdir())[:10]]
    )
    fill = timm_fill(images.reshape(-1, 3).mean(0) / 255)
    repeats = 20  # 20,000 augmented images a side: sampling noise of the statistics ~2%

    def summary(change):  # mean |change| per pixel (0..255) per image
        return np.mean(change < 1.0), np.median(change), np.percentile(change, 90)

    random.seed(0)
    np.random.seed(0)
    reference = auto_augment.rand_augment_transform("rand-m9-n2-mstd1.0", {"translate_const": 14, "img_mean": fill})
    pil_images = [Image.fromarray(image) for image in images]
    timm_change = [np.abs(np.stack([np.asarray(reference(p)) for p in pil_images]).astype(int) - images).mean((1, 2, 3)) for _ in range(repeats)]
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    ours, generator = TimmRandAugment(2, 9, 1.0, fill), torch.Generator().manual_seed(0)
    our_change = [(ours(batch, generator).int() - batch.int()).abs().double().mean((1, 2, 3)).numpy() for _ in range(repeats)]
    expected, actual = summary(np.concatenate(timm_change)), summary(np.concatenate(our_change))
    assert actual == pytest.approx(expected, rel=0.1), f"timm (unchanged share, median, 90th) {expected}, ours {actual}"


@pytest.fixture
def training():
    config = validate_config(yaml.safe_load(open(REPO / "config.yaml")) | {"dataset": {"source": "synthetic"}})
    return config["training"]


@pytest.mark.parametrize("law", ["timm", "torchvision"])
def test_augmentation_is_a_function_of_the_generator_alone(training, law):
    training = training | {"randaugment": training["randaugment"] | {"law": law}}
    augment = TrainAugment(training, num_classes=10, mean=[0.5] * 3, std=[0.25] * 3)
    images = torch.randint(0, 256, (8, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    labels = torch.arange(8) % 10
    global_states = torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    x1, t1 = augment(images, labels, generator)
    generator.set_state(state)
    x2, t2 = augment(images, labels, generator)
    x3, _ = augment(images, labels, generator)  # the generator moved on: another batch
    assert torch.equal(x1, x2) and torch.equal(t1, t2) and not torch.equal(x1, x3)
    assert torch.allclose(t1.sum(-1), torch.ones(8)) and (t1 > 0).all()  # mixed, smoothed soft targets
    # no global generator was read or moved
    assert torch.equal(torch.random.get_rng_state(), global_states[0])
    assert (np.random.get_state()[1] == global_states[1]).all() and random.getstate() == global_states[2]


@pytest.mark.parametrize("prob, mixup_alpha, cutmix_alpha", [(1.0, 1.0, 0.8), (0.5, 1.0, 0.8), (1.0, 0.0, 0.8), (1.0, 0.4, 0.0)])
def test_mixup_cutmix_equals_timms_given_the_same_draws(monkeypatch, prob, mixup_alpha, cutmix_alpha):
    ours = MixupCutmix(mixup_alpha, cutmix_alpha, prob=prob, switch_prob=0.5, label_smoothing=0.1, num_classes=10)
    timm = Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=prob, switch_prob=0.5, mode="batch", label_smoothing=0.1, num_classes=10)
    x = torch.randn(6, 3, 32, 24, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 9, 3, 1, 2])
    seen = set()
    for seed in range(12):
        draw = ours.draw(32, 24, torch.Generator().manual_seed(seed), "cpu")
        # timm's numpy draws, in its order: mix?, cutmix?, lam, box centre row, column
        uniforms = iter([0.0 if draw.mixed else 1.0, 0.0 if draw.cutmix else 1.0])
        centres = iter([int(draw.centre_y), int(draw.centre_x)])
        monkeypatch.setattr(np.random, "rand", lambda: next(uniforms))
        monkeypatch.setattr(np.random, "beta", lambda a, b: float(draw.lam))
        monkeypatch.setattr(np.random, "randint", lambda lo, hi, size=None: next(centres))
        expected_x, expected_targets = timm(x.clone(), labels)
        actual_x, actual_targets = ours.apply(x.clone(), labels, draw)
        assert torch.equal(actual_x, expected_x) and torch.equal(actual_targets, expected_targets), seed
        seen.add("none" if not draw.mixed else "cutmix" if draw.cutmix else "mixup")
    assert seen == ({"cutmix", "mixup"} if mixup_alpha and cutmix_alpha else {"cutmix"} if cutmix_alpha else {"mixup"}) | ({"none"} if prob < 1 else set())


def test_mixup_cutmix_draws_follow_timms_law():
    mixing = MixupCutmix(1.0, 0.8, prob=0.7, switch_prob=0.5, label_smoothing=0.1, num_classes=10)
    generator = torch.Generator().manual_seed(0)
    draws = [mixing.draw(32, 32, generator, "cpu") for _ in range(3000)]
    mixed = np.array([bool(d.mixed) for d in draws])
    cutmix = np.array([bool(d.cutmix) for d in draws])
    lam = np.array([float(d.lam) for d in draws])
    assert stats.binomtest(int(mixed.sum()), len(draws), 0.7).pvalue > 1e-3
    assert stats.binomtest(int(cutmix.sum()), len(draws), 0.5).pvalue > 1e-3
    assert stats.kstest(lam[cutmix], stats.beta(0.8, 0.8).cdf).pvalue > 1e-3
    assert stats.kstest(lam[~cutmix], stats.beta(1.0, 1.0).cdf).pvalue > 1e-3
    centres = np.array([int(d.centre_y) for d in draws] + [int(d.centre_x) for d in draws])
    assert stats.chisquare(np.bincount(centres, minlength=32)).pvalue > 1e-3


def randaugment_config(settings):
    config = yaml.safe_load(open(REPO / "presets" / "demo.yaml"))
    config["training"]["randaugment"] = settings
    return config


def test_randaugment_law_defaults_to_timm_and_bounds_the_magnitude_by_law():
    assert validate_config(randaugment_config({"magnitude": 10}))["training"]["randaugment"]["law"] == "timm"
    assert validate_config(randaugment_config({"law": "torchvision", "magnitude": 20}))["training"]["randaugment"]["magnitude"] == 20
    with pytest.raises(ConfigError, match=r"demo.yaml: training.randaugment: .*law timm .*magnitude 0..10"):
        validate_config(randaugment_config({"magnitude": 12}), "demo.yaml")
    with pytest.raises(ConfigError, match=r"training.randaugment: .*torchvision .*magnitude 0..30"):
        validate_config(randaugment_config({"law": "torchvision", "magnitude": 31}), "demo.yaml")


def test_analysis_batch_is_fixed_by_its_seed_alone():
    # the Hessian's fixed augmented batch: the same for a seed whatever the global generators hold
    from vitwork.analysis import augmented_training_batch

    training = validate_config(yaml.safe_load(open(REPO / "config.yaml")) | {"dataset": {"source": "synthetic"}})["training"]
    augment = TrainAugment(training, num_classes=10, mean=[0.5] * 3, std=[0.25] * 3)
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    labels, subset = np.arange(40) % 10, np.arange(40)
    batches = []
    with torch.random.fork_rng(devices=[]):
        for global_seed in (1, 2):
            torch.manual_seed(global_seed)
            batches.append(augmented_training_batch(augment, images, labels, subset, 8, seed=7))
    (inputs_a, targets_a, chosen_a), (inputs_b, targets_b, chosen_b) = batches
    assert torch.equal(inputs_a, inputs_b) and torch.equal(targets_a, targets_b) and np.array_equal(chosen_a, chosen_b)
    assert not torch.equal(batches[0][0], augmented_training_batch(augment, images, labels, subset, 8, seed=8)[0])
