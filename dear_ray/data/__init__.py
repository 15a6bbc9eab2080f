"""Video data: annotation lists, decoding (decord or torchcodec), MMAction2 frame samplers, clip
transforms (float or uint8 handover), `VideoDataset` with bad-video handling, and SDN side inputs.

The synthetic data generator lives in `dear_ray.data.synth` and is not imported here.
"""

from dear_ray.data.annotations import (
    AnnotationError,
    VideoRecord,
    read_annotation_list,
    read_class_names,
)
from dear_ray.data.dataset import (
    BadSample,
    BadVideoReport,
    TooManyBadVideosError,
    VideoDataset,
    collate_skip_bad,
    prepare_loading_process,
)
from dear_ray.data.decode import (
    DECODERS,
    DecoderUnavailableError,
    VideoDecodeError,
    check_decoder,
    get_frames,
    open_video,
    read_frames,
    SampledClip,
    read_clip,
    read_sampled_clip,
)
from dear_ray.data.presets import (
    ClipNormalizer,
    VideoTransform,
    build_test_transform,
    build_train_transform,
)
from dear_ray.data.sampling import DenseSampleFrames, FrameSampler, SampleFrames, SegmentSampler
from dear_ray.data.sdn_inputs import load_detections, load_scene_labels, mask_humans
from dear_ray.data.transforms import MEAN_RGB, STD_RGB

__all__ = [
    "AnnotationError",
    "BadSample",
    "BadVideoReport",
    "ClipNormalizer",
    "DECODERS",
    "DecoderUnavailableError",
    "DenseSampleFrames",
    "FrameSampler",
    "MEAN_RGB",
    "STD_RGB",
    "SampleFrames",
    "SampledClip",
    "SegmentSampler",
    "TooManyBadVideosError",
    "VideoDataset",
    "VideoDecodeError",
    "VideoRecord",
    "VideoTransform",
    "build_test_transform",
    "build_train_transform",
    "check_decoder",
    "collate_skip_bad",
    "get_frames",
    "load_detections",
    "load_scene_labels",
    "mask_humans",
    "open_video",
    "prepare_loading_process",
    "read_annotation_list",
    "read_class_names",
    "read_frames",
    "read_clip",
    "read_sampled_clip",
]
