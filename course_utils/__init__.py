"""The students' helper package: data, training, gradient checks, plots, device, seeds and fast mode.

Everything a notebook needs is importable from here, e.g. ``from course_utils import get_loaders, train``.
"""

from course_utils.cifar import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    NUM_TRAIN,
    NUM_VAL,
    DataUnavailableError,
    ImageSet,
    load_cifar10,
    resolve_data_root,
)
from course_utils.colab import offer_download, on_colab
from course_utils.gradcheck import (
    GradReport,
    check_module_gradients,
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    rel_error,
)
from course_utils.layers import Flatten, flatten
from course_utils.loaders import Loaders, TensorLoader, denormalize, get_loaders, torchvision_loaders
from course_utils.measure import count_multiply_adds, peak_memory, time_call
from course_utils.model_checkpoint import load_checkpoint, save_checkpoint
from course_utils.recipes import Recipe, compare_recipes, make_optimizers, train_with_recipe
from course_utils.runtime import FAST_CAPS, get_device, is_fast_mode, set_seed
from course_utils.seed_comparison import SeedResults, compare_over_seeds
from course_utils.synthetic import make_synthetic_cifar
from course_utils.training import History, check_accuracy, count_parameters, overfit_batch, train
from course_utils.viz import (
    plot_attention_map,
    plot_heatmap,
    plot_history,
    plot_seed_comparison,
    show_images,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "FAST_CAPS",
    "NUM_TRAIN",
    "NUM_VAL",
    "DataUnavailableError",
    "Flatten",
    "GradReport",
    "History",
    "ImageSet",
    "Loaders",
    "Recipe",
    "SeedResults",
    "TensorLoader",
    "compare_recipes",
    "make_optimizers",
    "train_with_recipe",
    "check_accuracy",
    "check_module_gradients",
    "compare_over_seeds",
    "count_multiply_adds",
    "count_parameters",
    "denormalize",
    "eval_numerical_gradient",
    "eval_numerical_gradient_array",
    "flatten",
    "get_device",
    "get_loaders",
    "is_fast_mode",
    "load_checkpoint",
    "offer_download",
    "on_colab",
    "load_cifar10",
    "make_synthetic_cifar",
    "overfit_batch",
    "peak_memory",
    "plot_attention_map",
    "plot_heatmap",
    "plot_history",
    "plot_seed_comparison",
    "rel_error",
    "resolve_data_root",
    "save_checkpoint",
    "set_seed",
    "show_images",
    "time_call",
    "torchvision_loaders",
    "train",
]
