"""Checkpoint I/O of the trajectory classifier: the released ``moseg.pth`` and ours.

Loading is strict: a missing file, a file that is not a moseg checkpoint, or shapes that do
not fit raise :class:`motionseg_ros.weights.WeightsError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from motionseg_ros.models.config import MosegConfig
from motionseg_ros.weights import WeightsError

if TYPE_CHECKING:  # the model module imports this one
    from motionseg_ros.models.moseg import MosegModel


#: where the released checkpoint of the paper lives
RELEASED_WEIGHTS_HINT = (
    'the released weights are file "moseg.pth" of the Hugging Face repository '
    '"Changearthmore/moseg"; on a machine with network access run `motionseg fetch-weights` '
    '(or download it by hand) and copy the file here')

MANIFEST_PATH = Path(__file__).with_name('moseg_manifest.json')


def load_manifest(path: Union[str, Path] = MANIFEST_PATH) -> Dict[str, Any]:
    """Return the committed key -> shape/dtype list of the released checkpoint."""
    with open(path, 'r', encoding='utf-8') as f:
        return json.load(f)


def extract_state_dict(obj: Any) -> Dict[str, Tensor]:
    """Find the model's state dict in a loaded checkpoint and drop wrapping prefixes."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise WeightsError(f'checkpoint holds a {type(obj).__name__}, not a state dict')
    for key in ('model_state_dict', 'state_dict', 'model'):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise WeightsError('checkpoint holds no tensors')
    for prefix in ('module.', 'model.', '_orig_mod.'):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def config_from_state_dict(state: Mapping[str, Tensor]) -> MosegConfig:
    """Infer the dimensions of a checkpoint from its shapes (works for ``moseg.pth``)."""
    try:
        fc1 = state['joint_encoder.input_fc1.weight']
        fc2 = state['joint_encoder.fc2.weight']
        emb = state['decoder.embedding.embedding.weight']
        ffn0 = state['decoder.encoders.0.ffn.0.weight']
        lin1 = state['joint_encoder.transformer_model.encoder.layers.0.linear1.weight']
    except KeyError as exc:
        raise WeightsError(f'not a moseg checkpoint: key {exc.args[0]!r} missing') from exc

    def count(prefix: str) -> int:
        idx = {int(k[len(prefix):].split('.')[0]) for k in state if k.startswith(prefix)}
        return len(idx)

    in_ch = int(fc1.shape[1])
    # channels = 2 * 2 * (1 + 2 f) + depth(2) + extra(2); released: 88 = 84 + 2 + 2
    options = [(f, dep, ext) for f in range(0, 17) for dep in (True, False)
               for ext in (True, False)
               if 4 * (1 + 2 * f) + 2 * dep + 2 * ext == in_ch]
    if not options:
        raise WeightsError(f'input projection expects {in_ch} channels: no encoding fits')
    f, dep, ext = options[0]
    net = int(emb.shape[0])
    n_enc = count('decoder.encoders.')
    return MosegConfig(
        n_freqs=f, use_depth=dep, use_extra=ext, d_model=int(fc2.shape[0]),
        dim_feedforward=int(lin1.shape[0]),
        num_encoder_layers=count('joint_encoder.transformer_model.encoder.layers.'),
        num_decoder_layers=count('joint_encoder.transformer_model.decoder.layers.'),
        net_channels=net, decoder_ffn=int(ffn0.shape[0]), decoder_blocks=n_enc,
        feature_dim=int(ffn0.shape[1]) - net)


def load_checkpoint(path: Union[str, Path], cfg: Optional[MosegConfig] = None,
                    map_location: str = 'cpu') -> Tuple['MosegModel', Dict[str, Any]]:
    """Load ``moseg.pth`` or one of our checkpoints strictly; return (model, metadata).

    Our checkpoints store ``{'model_state_dict', 'model_config', ...}``; the released one
    stores ``{'model_state_dict', ...}`` with the paper's dimensions. A missing file, a file
    that is not a moseg checkpoint, or shapes that do not fit raise :class:`WeightsError`.
    """
    path = Path(path)
    if not path.is_file():
        hint = RELEASED_WEIGHTS_HINT if path.name == 'moseg.pth' else (
            'give the path of a checkpoint written by `motionseg train-classifier`, '
            "`builtin:motion_only` / `builtin:motion_depth`, or the paper's moseg.pth ("
            + RELEASED_WEIGHTS_HINT + ')')
        raise WeightsError(f'moseg weights not found: {path}; {hint}')
    try:
        obj = torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise WeightsError(f'cannot read moseg weights {path}: {exc}') from exc
    meta: Dict[str, Any] = {}
    if isinstance(obj, Mapping):
        meta = {k: v for k, v in obj.items() if not isinstance(v, (Mapping, Tensor))}
        if isinstance(obj.get('model_config'), Mapping):
            meta['model_config'] = dict(obj['model_config'])
    state = extract_state_dict(obj)
    if cfg is None:
        cfg = (MosegConfig.from_dict(meta['model_config']) if 'model_config' in meta
               else config_from_state_dict(state))
    from motionseg_ros.models.moseg import MosegModel
    model = MosegModel(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f'{len(missing)} missing (e.g. {missing[:3]})')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected (e.g. {unexpected[:3]})')
        if wrong:
            k = wrong[0]
            parts.append(f'{len(wrong)} with other shapes (e.g. {k}: file '
                         f'{tuple(state[k].shape)} vs model {tuple(expected[k].shape)})')
        raise WeightsError(f'moseg weights {path} do not fit the model {cfg.to_dict()}: '
                           + '; '.join(parts))
    model.load_state_dict(state, strict=True)
    model.eval()
    meta['model_config'] = cfg.to_dict()
    return model, meta


def save_checkpoint(path: Union[str, Path], model: MosegModel, **extra: Any) -> None:
    """Write ``{'model_state_dict', 'model_config', **extra}`` (loadable by the reference)."""
    data: Dict[str, Any] = {'model_state_dict': model.state_dict(),
                            'model_config': model.cfg.to_dict()}
    data.update(extra)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + '.tmp')
    torch.save(data, str(tmp))
    tmp.replace(path)
