"""Task streams: Task, TaskStream, the permuted / rotated / split builders, your own data, and
StreamSpec (a stream as settings: ``benchmark("split-mnist", scenario="class")``)."""

from .benchmarks import (
    DEFAULT_SPLIT_GROUPS, derived_generator, permuted, rotate_images, rotated, split_classes, subsample_train,
)
from .custom import from_tensors, load_tasks_file, save_tasks_file
from .spec import BENCHMARKS, StreamSpec, benchmark
from .taskfree import SCHEDULES, Timeline, rotating, task_free
from .task import (
    CLASS_UNITS, SCENARIOS, AsIs, Batch, DataSplit, Preprocess, Task, TaskStream, batches, gather, join, memory_rows,
)

__all__ = [
    "SCENARIOS", "CLASS_UNITS", "Batch", "Preprocess", "DataSplit", "Task", "TaskStream", "batches", "join",
    "memory_rows", "DEFAULT_SPLIT_GROUPS", "derived_generator", "permuted", "rotate_images", "rotated",
    "split_classes", "subsample_train", "AsIs", "gather", "from_tensors", "load_tasks_file", "save_tasks_file",
    "BENCHMARKS", "StreamSpec", "benchmark", "SCHEDULES", "Timeline", "rotating", "task_free",
]
