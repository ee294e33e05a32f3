"""Step `export` for a generation model: the Hugging Face folder copied as the served artifact
(`pretrained/`), verified token for token against eager `generate()`.

What is verified is what the servers run: handlers/engines/generating.py's decode loop, on golden
prompts of different lengths, greedy, each alone and all 16 in flight together (joining at
different steps, so padding and attention masks of a batched decode are exercised); a seeded
sampled request must give the same tokens alone and in company. The golden prompts and eager's
token ids go to golden_generation.json, which `make verify` checks every endpoint against.
"""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import handlers.engines.completions
import handlers.engines.generating
import handlers.engines.generation
import handlers.engines.sampling
import handlers.engines.speculative
import handlers.engines.structured
from handlers.engines.completions import LanguageModel
from handlers.formats import folder_format
from handlers.formats import int8_linear, pretrained_int8
from handlers.formats.pretrained_int8 import write_recipe
from handlers.engines.generating import Generating
from scripts.pipeline.drafts import copy_draft, draft_build, draft_files, served_generation
from scripts.pipeline.fingerprint import fingerprint, is_fresh, source_file, write_stamp
from scripts.pipeline.layout import Layout
import scripts.pipeline.quantize_generation
from scripts.pipeline.quantize_generation import gate_int8
from scripts.pipeline.loading import load_reference
from scripts.pipeline.sealed import refuse_changed, seal
from scripts.spec import BuildError, ModelSpec

PRETRAINED = folder_format("pretrained")
INT8 = folder_format("pretrained_int8")
FOLDER_FILES = ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json")
# Golden prompts: different lengths, review-like and not; a spec may give its own.
PROMPTS = [
    "The battery",
    "This film",
    "I",
    "The food was",
    "It is",
    "My",
    "The service at this place was slow and",
    "We",
    "What a",
    "The screen is bright and",
    "Never",
    "The plot",
    "Customer support",
    "After two weeks the",
    "Great",
    "The sound quality of these headphones is",
]
SEEDED = {"prompt": "The battery", "temperature": 0.9, "top_p": 0.95, "top_k": 50, "seed": 7}


def generation_fingerprint(spec: ModelSpec, layout: Layout) -> str:
    code = [
        Path(__file__),
        *(
            Path(inspect.getfile(m))
            for m in (
                handlers.engines.completions,
                handlers.engines.generation,
                handlers.engines.sampling,
                handlers.engines.structured,
            )
        ),
    ]
    code.append(Path(handlers.engines.generating.__file__))
    code += [source_file(spec.training.script)] if spec.training and spec.training.script else []
    settings = spec.model_dump(mode="json", include={"name", "version", "source", "task"})
    if wants_int8(spec):  # (a fp32-only model's fingerprint stays what it was)
        settings["int8"] = {
            "served": spec.serving.format,
            "quantize": spec.quantize.model_dump(mode="json"),
        }
        int8_code = (scripts.pipeline.quantize_generation, pretrained_int8, int8_linear)
        code += [Path(inspect.getfile(m)) for m in int8_code]
        code += [source_file(spec.quantize.texts)] if spec.quantize.texts else []
    if draft_build(spec, layout) is not None:  # (a model without a draft's stays what it was)
        code.append(Path(inspect.getfile(handlers.engines.speculative)))
    files = spec.model_files(layout.root) + code + draft_files(spec, layout)
    return fingerprint(settings, files)


def wants_int8(spec: ModelSpec) -> bool:
    return INT8.name in spec.export.wanted


def export_generation(spec: ModelSpec, layout: Layout, force: bool = False) -> tuple[bool, dict]:
    """(up to date already?, the verification report)."""
    artifact = layout.artifact(spec)
    out, stamp, report_path = artifact.root, artifact.stamp, artifact.report
    require_files(spec, layout)
    refuse_changed(spec, layout, force)
    expected = generation_fingerprint(spec, layout)
    folder = out / PRETRAINED.file
    made = [folder, artifact.golden_generation, report_path]
    if not force and is_fresh(stamp, expected, made):
        if not artifact.record.exists():
            seal(spec, layout)
        return True, json.loads(report_path.read_text())
    shutil.rmtree(out, ignore_errors=True)
    folder.mkdir(parents=True)
    write_folder(spec, layout, folder)
    copy_draft(spec, layout, folder)
    generation = served_generation(spec, layout)
    assert generation, "a generation model's task has its generation: settings (spec validation)"
    served = folder_format(spec.serving.format)
    wanted = [PRETRAINED, *([INT8] if wants_int8(spec) else [])]
    if INT8 in wanted:  # the int8 recipe travels with the folder the servers load
        write_recipe(folder, spec.quantize.exclude)
    languages = {form.name: LanguageModel(folder, generation, form=form) for form in wanted}
    goldens = {
        name: eager_tokens(language, PROMPTS, generation.max_tokens)
        for name, language in languages.items()
    }
    gate = {}
    if INT8.name in languages:
        fp32, int8 = languages[PRETRAINED.name], languages[INT8.name]
        gate = gate_int8(spec, fp32, int8, goldens[PRETRAINED.name], goldens[INT8.name])
    # verified and golden: what the servers run, in the format they serve
    golden = goldens[served.name]
    report = verify_decode_loop(spec, languages[served.name], golden)
    report.update({"served": served.name, **({"int8": gate} if gate else {})})
    artifact.golden_generation.write_text(json.dumps(golden, indent=1) + "\n")
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    write_stamp(stamp, expected, formats={f.name: f.file for f in wanted}, skipped={})
    seal(spec, layout)
    return False, report


def served_language(spec: ModelSpec, layout: Layout, **options) -> LanguageModel:
    """The built folder as the servers load it: in the spec's serving format (fp32 or int8);
    `options` are LanguageModel's (threads, max_choices)."""
    generation = served_generation(spec, layout)
    assert generation, "a generation model's task has its generation: settings (spec validation)"
    form = folder_format(spec.serving.format)
    return LanguageModel(layout.artifact_dir(spec) / form.file, generation, form=form, **options)


def require_files(spec: ModelSpec, layout: Layout) -> None:
    source = spec.source
    if source.pretrained is not None:
        folder = layout.source(source.pretrained)
        files = [folder / name for name in FOLDER_FILES[:3]]
    else:
        assert source.checkpoint and source.tokenizer, "the spec's source check requires both"
        files = [layout.source(source.checkpoint), layout.source(source.tokenizer)]
    missing = [str(layout.shown(f)) for f in files if not f.exists()]
    if missing:
        raise BuildError(
            f"{spec.name}: {missing} not found; run `make train`, or save the model with "
            "save_pretrained (or its state_dict as the checkpoint) and the tokenizer with "
            "tokenizer.save"
        )


def write_folder(spec: ModelSpec, layout: Layout, folder: Path) -> None:
    """The served Hugging Face folder: the spec's copied, or, from module + checkpoint, the
    model written with save_pretrained (safetensors) beside its tokenizer.json."""
    source = spec.source
    if source.pretrained is not None:
        for name in FOLDER_FILES:
            if (layout.source(source.pretrained) / name).exists():
                shutil.copy2(layout.source(source.pretrained) / name, folder / name)
        return

    model = load_reference(spec, layout)
    if not hasattr(model, "save_pretrained") or not hasattr(model, "generate"):
        raise BuildError(
            f"{spec.name}: source.module {source.module} is not a transformers causal LM "
            "(no save_pretrained / generate); subclass one (e.g. GPT2LMHeadModel) or give "
            "source.pretrained"
        )
    # nn.Module types its attributes as Tensor | Module; the hasattr check above is the proof
    model.save_pretrained(folder, safe_serialization=True)  # pyright: ignore[reportCallIssue]
    assert source.tokenizer, "the spec's source check requires a tokenizer beside a checkpoint"
    shutil.copy2(layout.source(source.tokenizer), folder / "tokenizer.json")


def eager_tokens(language: LanguageModel, prompts: list[str], max_tokens: int) -> dict:
    """What `model.generate(do_sample=False)` makes of each prompt, one at a time, without
    the end token: the reference every decode loop and endpoint must equal."""
    import torch

    expected = []
    for prompt in prompts:
        ids = torch.tensor([language.encode(prompt)])
        with torch.inference_mode():
            # LanguageModel types its model as transformers' base class; generate() is on the
            # causal LM it loads (handlers/engines/completions.py)
            made = language.model.generate(  # pyright: ignore[reportAttributeAccessIssue, reportCallIssue]
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=language.end_token,
                eos_token_id=language.end_token,
            )
        expected.append([t for t in made[0, ids.shape[1] :].tolist() if t != language.end_token])
    texts = [language.decode(ids) for ids in expected]
    return {"prompts": prompts, "max_tokens": max_tokens, "token_ids": expected, "texts": texts}


def run_together(language: LanguageModel, bodies: list[dict], stagger: int = 0) -> list[dict]:
    """The serving mode's answers (non-streaming) to these requests; with `stagger`, every
    other request joins `stagger` steps after the first half started."""
    generating = Generating(language, max_sequences=len(bodies))
    answers, later = {}, []
    for i, body in enumerate(bodies):
        if stagger and i % 2:
            later.append(i)
            continue
        generating.admit(i, body)
    steps = 0
    while generating.busy or later:
        if steps == stagger:
            for i in later:
                generating.admit(i, bodies[i])
            later = []
        for key, pieces in generating.step().items():
            for piece in pieces:
                if piece.final:
                    answers[key] = {"token_ids": piece.token_ids, "text": piece.text}
        steps += 1
    return [answers[i] for i in range(len(bodies))]


def verify_decode_loop(spec: ModelSpec, language: LanguageModel, golden: dict) -> dict:
    bodies = [{"prompt": p, "max_tokens": golden["max_tokens"]} for p in golden["prompts"]]
    runs = {
        "alone": [run_together(language, [body])[0] for body in bodies],
        f"{len(bodies)} in flight": run_together(language, bodies),
        f"{len(bodies)} in flight, half joining 3 steps later": run_together(language, bodies, 3),
    }
    problems = [
        f"{spec.name}: decode loop ({run}) on {prompt!r}: {answer['token_ids']} but eager "
        f"generate() gives {expected}"
        for run, answers in runs.items()
        for prompt, answer, expected in zip(golden["prompts"], answers, golden["token_ids"])
        if answer["token_ids"] != expected
    ]
    seeded = {**SEEDED, "max_tokens": golden["max_tokens"]}
    twice = [run_together(language, [seeded])[0], run_together(language, [*bodies, seeded])[-1]]
    if twice[0]["token_ids"] != twice[1]["token_ids"]:
        problems.append(f"{spec.name}: a seeded sampled request differs in company: {twice}")
    if problems:
        raise BuildError(problems)
    return {
        "prompts": len(bodies),
        "checks": {run: "token ids equal eager generate()" for run in runs},
        "seeded sampling": "same tokens alone and beside 16 others",
        "example": {"prompt": bodies[0]["prompt"], "continuation": golden["texts"][0]},
        "skipped": {},
    }
