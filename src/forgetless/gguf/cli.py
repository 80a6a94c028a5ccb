"""The ``forgetless convert-gguf`` subcommand: a GGUF file -> a safetensors checkpoint directory."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from forgetless.schema_flags import Command, add_command


class ConvertGgufArgs(BaseModel):
    """What ``forgetless convert-gguf`` converts, and into what."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    file: str = Field(description="the .gguf file (llama.cpp's format)")
    output: str = Field(description="directory to write (from_pretrained loads it)")
    dtype: Literal["bf16", "fp16", "fp32"] = Field(
        "bf16", description="dtype of the written weights (fp32 keeps the dequantized values exactly)")
    overwrite: bool = Field(False, description="replace --output if it exists")


def cmd_convert_gguf(args: ConvertGgufArgs) -> int:
    """Convert a GGUF file into a safetensors checkpoint with its tokenizer and chat template."""
    from forgetless.gguf.convert import convert_gguf, source_record
    from forgetless.outputs import guard_output

    guard_output(args.output, {"GGUF file": args.file}, args.overwrite)  # before the (slow) conversion
    output = convert_gguf(args.file, args.output, args.dtype, overwrite=args.overwrite)
    record = source_record(output) or {}
    types = ", ".join(f"{name} x{count}" for name, count in record.get("tensor_types", {}).items())
    template = "with its chat template" if record.get("chat_template") else "no chat template in the file"
    print(f"model written to {output} ({args.dtype}; {record.get('architecture')} from {types}; {template})")
    return 0


def add_convert_gguf_parser(subparsers: Any) -> None:
    """Register ``forgetless convert-gguf``."""
    # Its arguments are the file to convert and the directory to write, not model specs: nothing to resolve.
    add_command(subparsers, "convert-gguf", Command(ConvertGgufArgs, cmd_convert_gguf, resolve_specs=False),
                show_defaults=True, positional=("file",))
