"""Task streams: Task, TaskStream, and the permuted / rotated / split builders."""

from .benchmarks import DEFAULT_SPLIT_GROUPS, derived_generator, permuted, rotate_images, rotated, split, subsample_train
from .custom import from_tensors, load_tasks_file, save_tasks_file
from .task import SCENARIOS, AsIs, Batch, Preprocess, Split, Task, TaskStream, batches, gather

__all__ = [
    "SCENARIOS", "Batch", "Preprocess", "Split", "Task", "TaskStream", "batches",
    "DEFAULT_SPLIT_GROUPS", "derived_generator", "permuted", "rotate_images", "rotated", "split", "subsample_train",
    "AsIs", "gather", "from_tensors", "load_tasks_file", "save_tasks_file",
]
