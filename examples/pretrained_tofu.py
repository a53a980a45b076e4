import functools
import tempfile

from flax import nnx

import jaxunlearn
from jaxunlearn import objectives
from jaxunlearn.data import tofu_files
from jaxunlearn.nn.lora import with_lora
from jaxunlearn.nn.pretrained import from_pretrained, save_pretrained

# The committed fixtures; point these at your checkpoint folder (save_pretrained's
# config.json + safetensors) and your copy of the locuslab/TOFU files.
CHECKPOINT = "tests/fixtures/llama/gqa-llama3"
RETAIN_MODEL = "tests/fixtures/llama/tied-default"  # fine-tuned without the forget authors
TOFU = "tests/fixtures/tofu"  # tokenizer.json beside the files here; usually the checkpoint's

tokenizer = tofu_files.HFTokenizer(TOFU)  # needs <pad> <bos> <ans> <eos>: see the guide
dataset = tofu_files.tofu_dataset(TOFU, tokenizer, "forget10", questions_per_author=4)
forget = tofu_files.forget_rows(dataset, "forget10")
loss = functools.partial(
  objectives.answer_losses, answer_id=tokenizer.answer_id, pad_id=tokenizer.pad_id
)
model = from_pretrained(CHECKPOINT)  # float32; dtype=jnp.bfloat16 halves its memory
model = with_lora(model, rank=8, rngs=nnx.Rngs(0))  # optional: train rank-8 adapters only
report = jaxunlearn.unlearn(
  model,
  dataset=dataset,
  forget=forget.forget_idx,  # the rows of forget10.json
  method="igs",
  loss=loss,
  steps=3,
  batch_size=8,
  retrained=(from_pretrained(RETAIN_MODEL), None),
  progress=False,
)
print(f"{len(dataset.train)} rows, {dataset.authors} authors, forgetting {len(forget.forget_idx)}")
print("igs:", report.summary())
# The unlearned model as a Hugging Face folder (adapters merged), which transformers reads
saved = save_pretrained(report.model, tempfile.mkdtemp(prefix="unlearned-"), like=CHECKPOINT)
print("saved:", sorted(p.name for p in saved.iterdir()))
