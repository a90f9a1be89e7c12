"""Reference implementations the graders compare submissions with (one module per notebook)."""
