"""Knowledge distillation: a trained model's output maps as soft targets for another.

A *teacher* (e.g. a slower shipped model) runs on every training patch, with the same
context the labels' targets get, and its activated maps are handed to the student's loss
beside the labels' targets (``targets["teacher"]``). The student's family says how it
learns from them (its ``loss``, where ``supports_distillation``: StarDist and U-Net); its
network may differ from the teacher's as long as both give maps of the same shape (same
output stride and maps).
"""

from __future__ import annotations

import torch

from seglab.errors import SeglabError
from seglab.inference.dihedral import augmented_maps_iter
from seglab.models.base import TEACHER_KEY, SegmentationModel
from seglab.progress import run_to_end
from seglab.torch_env import autocast

__all__ = ["TEACHER_KEY", "check_pair", "teacher_maps"]


def check_pair(teacher: SegmentationModel, student: SegmentationModel) -> None:
    """Raise a clear error when ``teacher`` cannot teach ``student``."""
    if not type(student).supports_distillation:
        raise SeglabError(f"the {student.config.family} family does not learn from a teacher's maps")
    if teacher.config.family != student.config.family:
        raise SeglabError(f"a {teacher.config.family} model cannot teach a {student.config.family} model")
    if teacher.config.input_channels != student.config.input_channels:
        raise SeglabError(f"the teacher reads {teacher.config.input_channels} channel(s), "
                          f"the student {student.config.input_channels}")
    if teacher.output_stride != student.output_stride:
        raise SeglabError(f"the teacher's maps are at 1/{teacher.output_stride} of the image, "
                          f"the student's at 1/{student.output_stride}")
    t_arch, s_arch = teacher.config.architecture, student.config.architecture
    if t_arch.get("n_rays") != s_arch.get("n_rays"):
        raise SeglabError(f"the teacher has {t_arch.get('n_rays')} rays, the student {s_arch.get('n_rays')}")


@torch.no_grad()
def teacher_maps(teacher: SegmentationModel, x: torch.Tensor, augment: bool = False) -> torch.Tensor:
    """The teacher's activated maps (float32, ``(B, K, H / stride, W / stride)``) for a batch of
    normalised patches ``x`` ``(B, C, H, W)``; H and W must be multiples of its size divisor.
    ``augment``: averaged over the patches' eight orientations (:mod:`seglab.inference.dihedral`),
    a better teacher than the single pass, at eight times its cost."""
    div = int(teacher.size_divisor)
    if x.shape[-1] % div or x.shape[-2] % div:
        raise SeglabError(f"teacher patches must be multiples of {div} px, got {tuple(x.shape[-2:])}")
    teacher.network.eval()
    x = x.contiguous(memory_format=torch.channels_last)
    with autocast(x.device, True):
        if not augment:
            return teacher.forward_tiles(x).float().contiguous()
        maps = run_to_end(augmented_maps_iter(teacher, x))
    for plane in maps:  # the activation the iterated forward leaves to the stitched maps
        teacher.activate_maps(plane)
    return maps.contiguous()
