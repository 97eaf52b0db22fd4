"""The QualiTeacher method's pure pieces: EMA, augmentations, PL memory bank, losses.

Each module has one job and no state beyond what its arguments carry, so the training loop
reads top to bottom and tests call these directly (docs/method.md §2–§6).
"""
