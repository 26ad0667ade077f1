"""Mean-pooling classification heads for sentence-transformers checkpoints.

A sentence-transformers model (all-MiniLM-L6-v2, all-mpnet-base-v2, ...) was trained to represent a
text by the attention-masked mean of its token vectors; its [CLS] vector and pooler were never
trained for that. `AutoModelForSequenceClassification` would classify from [CLS] through the stale
pooler, so fine-tuning first has to re-purpose that token. These classes keep the checkpoint's own
representation: mean of the last hidden states over real tokens -> dropout -> linear. A config with
`normalize_pooled: true` L2-normalises the mean first, as sentence-transformers' Normalize module does (the
frozen-encoder probe, textclf.train.probe, fits its head on such vectors).

Each class has its own `model_type` (`textclf-mean-<base>`), registered with the transformers Auto
classes when `textclf.modeling` is imported. A saved model therefore says what it is: loading it
without textclf fails loudly ("unrecognized model type") instead of silently using a [CLS] head.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertModel,
    MPNetConfig,
    MPNetModel,
    PretrainedConfig,
    PreTrainedModel,
    RobertaConfig,
    RobertaModel,
    XLMRobertaConfig,
    XLMRobertaModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput

# model_type of the base checkpoint -> (its config class, its encoder class)
SUPPORTED: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "bert": (BertConfig, BertModel),
    "mpnet": (MPNetConfig, MPNetModel),
    "roberta": (RobertaConfig, RobertaModel),
    "xlm-roberta": (XLMRobertaConfig, XLMRobertaModel),
}
PREFIX = "textclf-mean-"
NORMALIZE_ATTR = "normalize_pooled"  # config attribute: L2-normalise the pooled vector before the head


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """[batch, seq, width] -> [batch, width]: the mean over positions where attention_mask is 1."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _make_classes(base_type: str):
    config_cls, encoder_cls = SUPPORTED[base_type]
    pretrained_cls = encoder_cls.__mro__[1]  # e.g. BertPreTrainedModel: weight init, checkpoint key prefix
    prefix = encoder_cls.base_model_prefix
    name = encoder_cls.__name__.removesuffix("Model")

    mean_config = type(f"MeanPooling{config_cls.__name__}", (config_cls,), {"model_type": PREFIX + base_type})

    class MeanPoolingClassifier(pretrained_cls):  # type: ignore[valid-type,misc]  # a base chosen at runtime
        config_class = mean_config

        def __init__(self, config):
            super().__init__(config)
            self.num_labels = config.num_labels
            setattr(self, prefix, encoder_cls(config, add_pooling_layer=False))
            dropout = getattr(config, "classifier_dropout", None)
            self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)
            self.post_init()

        def forward(
            self,
            input_ids=None,
            attention_mask=None,
            token_type_ids=None,
            position_ids=None,
            inputs_embeds=None,
            labels=None,
            output_hidden_states=None,
            output_attentions=None,
            **kwargs,
        ) -> SequenceClassifierOutput:
            inputs = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "position_ids": position_ids,
                "inputs_embeds": inputs_embeds,
            }
            if token_type_ids is not None:  # MPNet has no segment embeddings
                inputs["token_type_ids"] = token_type_ids
            outputs = getattr(self, prefix)(
                **inputs, output_hidden_states=output_hidden_states, output_attentions=output_attentions, return_dict=True
            )
            pooled = masked_mean(outputs.last_hidden_state, attention_mask)
            if getattr(self.config, NORMALIZE_ATTR, False):
                pooled = nn.functional.normalize(pooled, dim=-1)
            logits = self.classifier(self.dropout(pooled))
            loss = None
            if labels is not None:
                if self.num_labels == 1:
                    loss = nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
                elif labels.dtype in (torch.long, torch.int):
                    loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
                else:
                    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            return SequenceClassifierOutput(
                loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
            )

    MeanPoolingClassifier.__name__ = MeanPoolingClassifier.__qualname__ = f"MeanPooling{name}ForSequenceClassification"
    return mean_config, MeanPoolingClassifier


CLASSES = {base: _make_classes(base) for base in SUPPORTED}
for _config_cls, _model_cls in CLASSES.values():
    AutoConfig.register(_config_cls.model_type, _config_cls, exist_ok=True)
    AutoModelForSequenceClassification.register(_config_cls, _model_cls, exist_ok=True)


def mean_pooling_class(base_type: str):
    """The mean-pooling classifier for a checkpoint of `base_type`, or None if there is none."""
    found = CLASSES.get(base_type.removeprefix(PREFIX))
    return found[1] if found else None
