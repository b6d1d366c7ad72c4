"""Named experiments for ``python -m lars_hvd.train --preset NAME``.

A preset is a set of flag values (any flag given on the command line overrides it), the
source its recipe comes from, and, for what a GPU user runs as shipped (precision, the
per-worker batch bound, evaluation), a one-line source each. Values a preset does not set
keep the flag's default. ``--dry-run`` prints all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    source: str  # where the recipe comes from, in one line
    settings: dict = field(default_factory=dict)  # flag name (underscored) -> value
    why: dict = field(default_factory=dict)  # setting -> its source, in one line

    def describe(self, name: str, current: dict) -> str:
        """The preset's source, and each setting it explains, with ``current``'s value
        (a flag on the command line may have changed it)."""
        lines = [f"preset                   {name}: {self.source}"]
        for key, reason in self.why.items():
            value = current[key] if current.get(key) is not None else "derived"
            changed = "" if self.settings.get(key, value) == value else " (your flag)"
            lines.append(f"  {key:<23}{value}{changed}: {reason}")
        return "\n".join(lines)


# Evaluating ImageNet's 50,000 validation images costs about 1% of an epoch's compute (a
# forward pass each, against a forward and backward pass for each of 1,281,167 images).
IMAGENET_EVAL_COST = "about 1% of an epoch's compute, so every epoch"


PRESETS: dict[str, Preset] = {
    # The default job (make demo): a 106K-parameter BN CNN on Fashion-MNIST at a global
    # batch of 4096 (14 optimizer steps an epoch), LARS with the paper's eta, linear warmup
    # and poly(2) decay from peak LR 10 (the best of LR 1, 3 and 10 in a calibration at this
    # batch). The epoch count buys the demo's accuracy target: see docs/training.md.
    "fashion-mnist": Preset(
        "You, Gitman, Ginsburg 2017 (Algorithm 1: eta 0.001, poly power 2, momentum 0.9, "
        "weight decay 5e-4); LR 10 from a calibration at batch 4096",
        {"epochs": 20},
    ),
    # The authors' Caffe solver for AlexNet-BN at 8K: their warmup ramp is quadratic over
    # about 3.8 epochs from LR 1; ours is linear over the same span.
    "alexnet-bn-imagenet-8k": Preset(
        "You, Gitman, Ginsburg 2017, the authors' AlexNet-BN Caffe solver at batch 8K: 100 "
        "epochs, LR 10 (warmup from 1), poly 2, momentum 0.9, weight decay 5e-4, eta 0.001",
        {"dataset": "imagenet", "model": "alexnet_bn", "global_batch_size": 8192,
         "max_per_worker_batch": 512, "epochs": 100, "learning_rate": 10.0,
         "warmup_epochs": 3.8, "warmup_start_lr": 1.0, "decay": "poly", "poly_power": 2.0,
         "momentum": 0.9, "weight_decay": 5e-4, "trust_coefficient": 0.001,
         "precision": "fp32", "eval_every_epochs": 1},
        {"precision": "the safe default: the recipe does not depend on a precision",
         "max_per_worker_batch": "the paper's AlexNet-BN run at batch 4096 on one DGX-1 "
                                 "(8x P100 16 GB): 512 per GPU",
         "eval_batch_size": "the per-worker training batch (inference needs less memory)",
         "eval_every_epochs": IMAGENET_EVAL_COST},
    ),
    # The paper gives ResNet-50 at 32K its epochs, decay, momentum, eta and weight decay,
    # not a peak LR that carries over to this implementation: LR 31.2 with 25 warmup epochs
    # is the MLPerf ResNet-50 LARS rule for a global batch of 32K and more.
    "resnet50-imagenet-32k": Preset(
        "You, Gitman, Ginsburg 2017 (ResNet-50 at 32K: 90 epochs, poly 2, momentum 0.9, eta "
        "0.001, weight decay 1e-4 with augmentation); peak LR and warmup: MLPerf v1.5 rule",
        {"dataset": "imagenet", "model": "resnet50", "global_batch_size": 32768,
         "max_per_worker_batch": 128, "epochs": 90, "learning_rate": 31.2,
         "warmup_epochs": 25.0, "decay": "poly", "poly_power": 2.0, "momentum": 0.9,
         "weight_decay": 1e-4, "trust_coefficient": 0.001, "precision": "fp32",
         "eval_every_epochs": 1},
        {"precision": "the safe default: the recipe does not depend on a precision; "
                      "mixed_float16 doubles what a GPU holds (then 256 per worker)",
         "max_per_worker_batch": "NVIDIA DeepLearningExamples, TF ResNet-50 v1.5: 128 per "
                                 "16 GB V100 in fp32 (256 with mixed precision)",
         "eval_batch_size": "the per-worker training batch (inference needs less memory)",
         "eval_every_epochs": IMAGENET_EVAL_COST},
    ),
    # NVIDIA's MLPerf ResNet-50 v1.5 submission on 8x H100 with LARS.
    "resnet50-imagenet-mlperf": Preset(
        "MLPerf Training ResNet-50 v1.5, NVIDIA's 8x H100 LARS run: batch 3,200, LR 11, 2 "
        "warmup epochs, poly 2 to 1e-4, 37 epochs, weight decay 5e-5, label smoothing 0.1",
        {"dataset": "imagenet", "model": "resnet50", "global_batch_size": 3200,
         "max_per_worker_batch": 400, "epochs": 37, "learning_rate": 11.0,
         "warmup_epochs": 2.0, "decay": "poly", "poly_power": 2.0, "end_learning_rate": 1e-4,
         "momentum": 0.9, "weight_decay": 5e-5, "label_smoothing": 0.1,
         "trust_ratio_mode": "decayed_grad", "trust_coefficient": 0.001,
         "precision": "mixed_float16", "eval_every_epochs": 4},
        {"precision": "NVIDIA's MLPerf ResNet-50 submissions train in mixed fp16",
         "max_per_worker_batch": "the cited run: 3,200 over 8 H100 80 GB = 400 per GPU",
         "eval_batch_size": "the per-worker training batch (inference needs less memory)",
         "eval_every_epochs": "MLPerf Training rules for ResNet-50: evaluate every 4 epochs"},
    ),
}
