"""Read one drop file (CSV/TSV, JSON lines or a JSON array, Parquet) into Arrow string columns.

Text files are decoded with `data.encoding` (`auto`: UTF-8 when every byte decodes, else charset-normalizer's
guess) and streamed block by block through pyarrow's readers, keeping only the needed columns in Arrow (no
Python object per row): reading costs about the file's size in memory. A byte that does not decode, a row
that does not parse or a missing column is a one-line `DataError` naming the file, the line and the column.
"""

from __future__ import annotations

import codecs
import csv
import functools
import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from textclf.errors import DataError

FILE_READERS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
BLOCK_BYTES = 8 << 20  # pyarrow parses this much at a time; a longer row still reads
DETECT_BYTES = 1 << 20  # data.encoding=auto looks at this much of the head and around the first non-UTF-8 byte
PREFERRED_CODECS = ("utf_8", "cp1252", "latin_1")  # charset-normalizer's names; ties between guesses go to these
log = logging.getLogger(__name__)


class _BadByte(NamedTuple):
    line: int
    column: int
    byte: int
    offset: int


def _python_codec(encoding: str) -> str:
    """The codec to decode with; UTF-8 also drops a byte-order mark (Excel writes one)."""
    name = codecs.lookup(encoding).name
    return "utf-8-sig" if name == "utf-8" else name


def _first_undecodable(path: Path, encoding: str) -> _BadByte | None:
    """Where the first byte `encoding` cannot decode sits, streaming the file; None when all of it decodes."""
    codec = _python_codec(encoding)
    decoder = codecs.getincrementaldecoder(codec)()
    lines, tail, read = 0, 0, 0  # newlines so far, characters since the last one, bytes read
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(BLOCK_BYTES)
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                # err.object is the decoder's carried-over bytes + this chunk; its prefix decodes
                good = codecs.decode(err.object[: err.start], codec, "replace")
                newlines = good.count("\n")
                column = len(good) - good.rfind("\n") if newlines else tail + len(good) + 1
                offset = read - (len(err.object) - len(chunk)) + err.start
                return _BadByte(lines + newlines + 1, column, err.object[err.start], offset)
            if not chunk:
                return None
            read += len(chunk)
            newlines = text.count("\n")
            tail = len(text) - text.rfind("\n") - 1 if newlines else tail + len(text)
            lines += newlines


def _undecodable(path: Path, codec: str, setting: str) -> DataError | None:
    """The one-line error for the first byte that does not decode, or None when the whole file decodes."""
    bad = _first_undecodable(path, codec)
    if bad is None:
        return None
    if codecs.lookup(codec).name == "utf-8":
        what = "UTF-8 (Latin-1/Windows-1252?)"
        fix = f"re-save the file as UTF-8, e.g. `iconv -f cp1252 -t utf-8 {path.name}`, or set data.encoding=cp1252 / auto"
    else:
        what = f"{codec} (detected by data.encoding=auto)" if setting == "auto" else f"{codec} (data.encoding={setting})"
        fix = "set data.encoding to the file's codec (utf-8, cp1252, latin-1, ...) or re-save the file as UTF-8 with `iconv`"
    return DataError(f"{path}: line {bad.line}, character {bad.column}: byte 0x{bad.byte:02x} is not valid {what}; {fix}")


def detect_encoding(path: Path) -> str:
    """The file's codec: utf-8 when every byte decodes as UTF-8, else charset-normalizer's best guess."""
    bad = _first_undecodable(path, "utf-8")
    if bad is None:
        return "utf-8"
    from charset_normalizer import from_bytes

    # The head plus the text around the first non-UTF-8 byte: a sample that holds what decides the codec.
    with path.open("rb") as fh:
        sample = fh.read(DETECT_BYTES)
        if bad.offset >= DETECT_BYTES // 2:
            fh.seek(max(0, bad.offset - DETECT_BYTES // 4))
            sample += b"\n" + fh.read(DETECT_BYTES)
    matches = from_bytes(sample)
    best = matches.best()
    if best is None:
        raise DataError(
            f"{path}: not UTF-8 (byte 0x{bad.byte:02x} on line {bad.line}) and data.encoding=auto cannot tell its "
            "codec; set data.encoding to it (e.g. cp1252, latin-1) or re-save the file as UTF-8"
        )
    # Single-byte codecs often decode a sample equally well; prefer the common ones over, say, cp1250.
    tied = {name for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence) for name in m.could_be_from_charset}
    name = next((c for c in PREFERRED_CODECS if c in tied), best.encoding)
    return codecs.lookup(name).name


def first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def check_columns(columns: list[str], needed: list[str], where: str, others: str = "") -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        have = ", ".join(repr(c) for c in columns)
        which = " and ".join(repr(c) for c in missing)
        raise DataError(
            f"{where}: column {which} not found (columns: {have}){others}; rename the column or set "
            "data.text_column / data.label_column / data.group_column"
        )


def _drop_header_rows(table: pa.Table, path: Path) -> tuple[pa.Table, list[str]]:
    """A header repeated inside the data (files concatenated with `cat`): drop it, say so."""
    header = functools.reduce(pc.and_, [pc.fill_null(pc.equal(table[c], c), False) for c in table.column_names])
    hits = np.flatnonzero(header.to_numpy())
    if not len(hits):
        return table, []
    rows = ", ".join(str(i + 1) for i in hits[:5])
    return table.filter(pc.invert(header)), [f"{path}: dropped {len(hits)} repeated header row(s) (data row {rows})"]


def _read_csv(path: Path, needed: list[str], codec: str, setting: str, others: str) -> tuple[pa.Table, list[str]]:
    """Stream the file block by block, converting only the needed columns (as strings, empty = missing)."""
    utf8 = _python_codec(codec) == "utf-8-sig"  # pyarrow reads UTF-8 (and drops a BOM) without transcoding
    read = pa_csv.ReadOptions(encoding="utf8" if utf8 else codec, block_size=BLOCK_BYTES)
    parse = pa_csv.ParseOptions(delimiter="\t" if path.suffix.lower() == ".tsv" else ",", newlines_in_values=True)
    convert = pa_csv.ConvertOptions(
        include_columns=needed, column_types=dict.fromkeys(needed, pa.string()), strings_can_be_null=True, null_values=[""]
    )
    try:
        table = pa_csv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert).read_all()
    except KeyError:  # pyarrow: a needed column is not in the header
        check_columns(pa_csv.open_csv(path, read_options=read, parse_options=parse).schema.names, needed, str(path), others)
        raise
    except (UnicodeDecodeError, pa.ArrowInvalid) as err:
        bad = _undecodable(path, codec, setting)
        if bad is not None:
            raise bad from None
        if "Empty CSV file" in str(err):
            raise DataError(f"{path}: the file has no header and no rows; drop it or add a header and rows") from None
        raise DataError(
            f"{path}: cannot be parsed as CSV ({first_line(err)}); quote fields that hold the separator, quotes or newlines"
        ) from None
    return _drop_header_rows(table, path)


def _json_records(path: Path, codec: str) -> list[dict]:
    """The slow, exact reader: one object per line, or one array of objects; errors name the line."""
    with path.open(encoding=_python_codec(codec)) as fh:
        if fh.read(4096).lstrip().startswith("["):  # a .json file holding one array of objects
            fh.seek(0)
            try:
                return json.load(fh)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {err.lineno}: invalid JSON ({err.msg}); fix the file") from None
        fh.seek(0)
        records = []
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {lineno}: invalid JSON ({err.msg}); write one JSON object per line") from None
            if not isinstance(record, dict):
                raise DataError(
                    f"{path}: line {lineno}: expected a JSON object, got {type(record).__name__}; "
                    'write one object per line, e.g. {"text": ..., "label": ...}'
                )
            records.append(record)
    return records


def _read_jsonl(path: Path, needed: list[str], codec: str, setting: str, others: str) -> pa.Table:
    """pyarrow's block reader for plain JSON lines; anything it refuses (an array, mixed types, a bad
    line) goes through `_json_records`, which reads like pandas did or names the line."""
    try:
        with path.open(encoding=_python_codec(codec), errors="replace") as fh:
            array = fh.read(4096).lstrip().startswith("[")
        if not array:
            with pa.OSFile(str(path)) as raw:
                source = raw if _python_codec(codec) == "utf-8-sig" else pa.transcoding_input_stream(raw, codec, "utf-8")
                reader = pa_json.open_json(source, read_options=pa_json.ReadOptions(block_size=BLOCK_BYTES))
                if all(c in reader.schema.names for c in needed):
                    table = pa.Table.from_batches([batch.select(needed) for batch in reader])
                    table.validate(full=True)  # pyarrow's JSON reader keeps invalid UTF-8 as is; this finds it
                    return table
        frame = pd.DataFrame.from_records(_json_records(path, codec))
    except (UnicodeDecodeError, pa.ArrowInvalid):
        bad = _undecodable(path, codec, setting)
        if bad is not None:
            raise bad from None
        frame = pd.DataFrame.from_records(_json_records(path, codec))
    check_columns(list(frame.columns), needed, str(path), others)
    return frame_table(frame, needed, needed[1])


def _read_parquet(path: Path, needed: list[str], others: str) -> pa.Table:
    try:
        columns = pq.read_schema(path).names
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: cannot be read as Parquet ({first_line(err)}); re-export the file") from None
    check_columns(columns, needed, str(path), others)
    try:
        return pq.read_table(path, columns=needed)
    except Exception as err:
        raise DataError(f"{path}: cannot be read as Parquet ({first_line(err)}); re-export the file") from None


def head_columns(path: Path, encoding: str = "utf-8") -> list[str] | None:
    """Pre-flight of one drop file, reading only its head (DETECT_BYTES): the head decodes with `encoding` (a
    one-line DataError naming the byte, line and option if not) and the columns its header names; None when
    the header says nothing cheap (a JSON array, an unparsable first line: ingest gives the precise error)."""
    kind = FILE_READERS.get(path.suffix.lower())
    if kind == "parquet":
        return list(pq.read_schema(path).names)
    if kind is None or path.stat().st_size == 0:
        return None  # ingest names the unsupported or empty file
    with path.open("rb") as fh:
        head = fh.read(DETECT_BYTES)
    if encoding == "auto":
        try:
            codec = _python_codec("utf-8")
            text = codecs.getincrementaldecoder(codec)().decode(head, final=False)
        except UnicodeDecodeError:
            return None  # auto decides on more than the head: ingest detects and reports the codec
    else:
        codec = _python_codec(encoding)
        try:
            text = codecs.getincrementaldecoder(codec)().decode(head, final=False)
        except UnicodeDecodeError:
            error = _undecodable(path, encoding, encoding)
            if error is not None:
                raise error from None
            return None
    first = text.split("\n", 1)[0].rstrip("\r")
    if not first.strip():
        return None
    if kind == "csv":
        return next(csv.reader([first], delimiter="\t" if path.suffix.lower() == ".tsv" else ","), None)
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return None
    return list(record) if isinstance(record, dict) else None


def read_file(path: Path, needed: list[str], encoding: str = "utf-8", others: str = "") -> tuple[pa.Table, list[str], str | None]:
    """One drop file -> its `needed` columns ([text, label(, group)]), notes, and its codec (None: Parquet)."""
    kind = FILE_READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .csv, .tsv, .jsonl or .parquet")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; drop it or fill it with a header and rows")
    if kind == "parquet":
        return _read_parquet(path, needed, others), [], None
    codec = detect_encoding(path) if encoding == "auto" else codecs.lookup(encoding).name
    notes = []
    if encoding == "auto":
        log.info("%s: data.encoding=auto detected %s", path, codec)
        if codec != "utf-8":
            notes.append(f"{path}: decoded as {codec} (detected; set data.encoding={codec} to pin it)")
    if kind == "csv":
        table, header_notes = _read_csv(path, needed, codec, encoding, others)
        return table, notes + header_notes, codec
    return _read_jsonl(path, needed, codec, encoding, others), notes, codec


def _label_strings(series: pd.Series) -> pd.Series:
    """Labels as strings; integral floats (1.0 from a column with gaps) read as '1'."""
    if pd.api.types.is_float_dtype(series):
        whole = series.dropna()
        if (whole == whole.round()).all():
            series = series.astype("Int64")
    return series.map(lambda v: v if isinstance(v, str) else str(v), na_action="ignore")


def _string_array(series: pd.Series) -> pa.Array:
    return pa.array(series.map(lambda v: v if isinstance(v, str) else str(v), na_action="ignore"), pa.string(), from_pandas=True)


def frame_table(frame: pd.DataFrame, needed: list[str], label: str) -> pa.Table:
    """Needed columns of a pandas frame (object columns may mix types) as Arrow strings."""
    return pa.table(
        {
            c: pa.array(_label_strings(frame[c]), pa.string(), from_pandas=True) if c == label else _string_array(frame[c])
            for c in needed
        }
    )


def column_strings(column: pa.ChunkedArray, label: bool) -> pa.ChunkedArray:
    """A column as strings: str(v) per value, labels with integral floats (1.0 from a column with gaps) as '1'."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_null(column.type):
        return column.cast(pa.string())
    try:  # numbers and booleans: convert each distinct value once
        encoded = column.combine_chunks().dictionary_encode()
    except pa.ArrowNotImplementedError:  # lists, structs: as pandas prints them
        return pa.chunked_array([_string_array(column.to_pandas())])
    values = encoded.dictionary.to_pandas()
    strings = pa.array(_label_strings(values) if label else values.map(str), pa.string(), from_pandas=True)
    return pa.chunked_array([pa.DictionaryArray.from_arrays(encoded.indices, strings).cast(pa.string())])
