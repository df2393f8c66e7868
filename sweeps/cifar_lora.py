"""LoRA for vision: CIFAR-10 with ResNet-18, LoRA on conv + fc layers vs full fine-tuning.

    python sweeps/cifar_lora.py                                  # ResNet-18 + CIFAR-10 (hub)
    python sweeps/cifar_lora.py --data ~/data/cifar10            # cifar-10-batches-py or train/<class>/
    python sweeps/cifar_lora.py --model ./resnet-18              # a local save_pretrained directory
    python sweeps/cifar_lora.py --preset smoke                   # offline, 2 CPU cores

Target groups (adapter.targets): conv+fc, conv, fc, all-conv. Early stopping on validation
accuracy (train.early_stopping_patience); test accuracy and trainable parameters per trial.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.cli import main

if __name__ == "__main__":
    sys.exit(main("cifar_lora", doc=__doc__))
