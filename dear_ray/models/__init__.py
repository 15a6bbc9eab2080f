"""Video recognition models: backbones, heads and the Recognizer that wires them (docs/architecture.md)."""

from dear_ray.models.backbones import BackboneOutput, create_backbone, list_backbones
from dear_ray.models.checkpoint import export_weights, load_checkpoint
from dear_ray.models.heads import create_head, list_heads
from dear_ray.models.recognizer import PredictOutput, Recognizer, RecognizerOutput, build_recognizer

__all__ = [
    "BackboneOutput", "PredictOutput", "Recognizer", "RecognizerOutput", "build_recognizer",
    "create_backbone", "create_head", "export_weights", "list_backbones", "list_heads",
    "load_checkpoint",
]
