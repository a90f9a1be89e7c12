"""Notebook 4's Part 5: the budgets of its runs and the reference recipe (the solution of `my_recipe`).

``bench.vit`` measures exactly these; tests keep the notebook's ``budgets`` and ``my_recipe`` cells equal to them.
"""

from __future__ import annotations

from course_utils.recipes import Recipe

# Part 5's budgets (notebook 4's `budgets` cell): a small ViT for the experiments, the larger one for the final
# run; on a CPU the runs are shorter.
SMALL_VIT = dict(img_size=32, patch_size=4, embed_dim=64, num_layers=4, num_heads=4, dim_feedforward=128, dropout=0.0)
LARGE_VIT = dict(img_size=32, patch_size=4, embed_dim=128, num_layers=6, num_heads=4, dim_feedforward=256, dropout=0.0)
EXPERIMENT_EPOCHS = {"gpu": 3, "cpu": 1}
FINAL_CONFIG = LARGE_VIT
FINAL_EPOCHS = {"gpu": 10, "cpu": 3}

# The reference recipe, the solution of notebook 4's `my_recipe` cell: Muon for the encoder layers' weight
# matrices and AdamW for the rest, a linear warm-up then cosine decay, weight decay, gradient clipping, small
# batches, and random crops and flips on schedules of RECIPE_AUGMENT_FROM_EPOCHS epochs or more (they slow the
# first epochs down and pay off later).
RECIPE_POS_ENCODING = "sin2d"
RECIPE_AUGMENT_FROM_EPOCHS = 10


def reference_recipe(epochs: float) -> Recipe:
    """The reference recipe for a final run of ``epochs`` epochs."""
    return Recipe(
        optimizer="muon",
        lr=1e-3,
        weight_decay=0.05,
        schedule="warmup_cosine",
        warmup=0.1,
        label_smoothing=0.0,
        augment=epochs >= RECIPE_AUGMENT_FROM_EPOCHS,
        batch_size=32,
        clip_grad_norm=1.0,
    )
