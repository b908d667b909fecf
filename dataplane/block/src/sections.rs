//! Arrow schemas of the seven per-dataset sections and their encoding as
//! compressed Arrow IPC streams (LZ4 or zstd, see the builder). Columns are built from flat vectors
//! (no per-element builders); decoding checks every type and length, so a
//! corrupt object yields an error, never a panic.

use std::io::Cursor;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt8Type, UInt32Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, FixedSizeBinaryArray, GenericListArray, Int64Array, ListArray, PrimitiveArray, RecordBatch,
    StringArray, UInt8Array, UInt32Array, UInt64Array,
};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

/// Rows per record batch of the profiles section.
pub(crate) const PROFILE_BATCH_ROWS: usize = 4096;

pub(crate) fn list_of(item: DataType, nullable: bool) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, nullable)))
}

pub(crate) fn series_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("fingerprint", DataType::UInt64, false),
        Field::new("label_names", list_of(DataType::Utf8, false), false),
        Field::new("label_values", list_of(DataType::Utf8, false), false),
        Field::new("first_row", DataType::UInt32, false),
        Field::new("row_count", DataType::UInt32, false),
        Field::new("min_time_nanos", DataType::Int64, false),
        Field::new("max_time_nanos", DataType::Int64, false),
    ]))
}

pub(crate) fn profiles_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::FixedSizeBinary(16), false),
        Field::new("series", DataType::UInt32, false),
        Field::new("time_nanos", DataType::Int64, false),
        Field::new("total", DataType::Int64, false),
        Field::new("stack_ids", list_of(DataType::UInt32, false), false),
        Field::new("values", list_of(DataType::Int64, false), false),
        Field::new("span_ids", list_of(DataType::UInt64, false), true),
        Field::new("trace_ids", list_of(DataType::FixedSizeBinary(16), false), true),
    ]))
}

pub(crate) fn strings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("value", DataType::Utf8, false)]))
}

pub(crate) fn functions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::UInt32, false),
        Field::new("system_name", DataType::UInt32, false),
        Field::new("filename", DataType::UInt32, false),
        Field::new("start_line", DataType::Int64, false),
    ]))
}

pub(crate) fn mappings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("memory_start", DataType::UInt64, false),
        Field::new("memory_limit", DataType::UInt64, false),
        Field::new("file_offset", DataType::UInt64, false),
        Field::new("filename", DataType::UInt32, false),
        Field::new("build_id", DataType::UInt32, false),
        Field::new("flags", DataType::UInt8, false),
    ]))
}

pub(crate) fn locations_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("mapping", DataType::UInt32, false),
        Field::new("address", DataType::UInt64, false),
        Field::new("line_functions", list_of(DataType::UInt32, false), false),
        Field::new("line_numbers", list_of(DataType::Int64, false), false),
    ]))
}

/// STACKS since format version 2: each node's parent as its distance back
/// (`node - parent`, 0 for the root). A node inserted for a new stack is
/// almost always the child of the node inserted just before it, so the
/// column is mostly 1s: ~11× smaller than absolute parents once
/// compressed, the whole section ~2× (measured in ARCHITECTURE.md).
pub(crate) fn stacks_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("parent_distance", DataType::UInt32, false),
        Field::new("location", DataType::UInt32, false),
    ]))
}

/// STACKS of format version 1: absolute parent ids. Still read.
pub(crate) fn stacks_schema_v1() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("parent", DataType::UInt32, false),
        Field::new("location", DataType::UInt32, false),
    ]))
}

/// Encodes record batches as one IPC stream with the given body compression.
pub(crate) fn write_stream_with(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    out: &mut Vec<u8>,
    codec: arrow_ipc::CompressionType,
) -> Result<(), ArrowError> {
    let options = IpcWriteOptions::default().try_with_compression(Some(codec))?;
    let mut w = StreamWriter::try_new_with_options(out, schema, options)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()
}

/// Decodes an IPC stream and checks that its schema is `expected`.
pub(crate) fn read_stream(bytes: &[u8], expected: &SchemaRef) -> Result<Vec<RecordBatch>, ArrowError> {
    let reader = arrow_ipc::reader::StreamReader::try_new(Cursor::new(bytes), None)?;
    if reader.schema().fields() != expected.fields() {
        return Err(ArrowError::SchemaError(format!(
            "section schema {:?} is not the expected {:?}",
            reader.schema(),
            expected
        )));
    }
    reader.collect()
}

/// Decodes an IPC stream whose schema is one of `expected`; returns which.
pub(crate) fn read_stream_one_of(
    bytes: &[u8],
    expected: &[SchemaRef],
) -> Result<(usize, Vec<RecordBatch>), ArrowError> {
    let reader = arrow_ipc::reader::StreamReader::try_new(Cursor::new(bytes), None)?;
    let Some(which) = expected.iter().position(|e| reader.schema().fields() == e.fields()) else {
        return Err(ArrowError::SchemaError(format!(
            "section schema {:?} is none of the expected {:?}",
            reader.schema(),
            expected
        )));
    };
    Ok((which, reader.collect::<Result<_, _>>()?))
}

/// Reads only the named columns of a stream: the other columns' buffers
/// are skipped, not decompressed.
pub(crate) fn read_stream_columns(
    bytes: &[u8],
    expected: &SchemaRef,
    columns: &[&str],
) -> Result<Vec<RecordBatch>, ArrowError> {
    let projection = columns.iter().map(|c| expected.index_of(c)).collect::<Result<Vec<_>, _>>()?;
    let reader = arrow_ipc::reader::StreamReader::try_new(Cursor::new(bytes), Some(projection.clone()))?;
    let want = expected.project(&projection)?;
    if reader.schema().fields() != want.fields() {
        return Err(ArrowError::SchemaError(format!(
            "section schema {:?} is not the expected {:?}",
            reader.schema(),
            want
        )));
    }
    reader.collect()
}

pub(crate) fn batch(schema: &SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch, ArrowError> {
    RecordBatch::try_new(Arc::clone(schema), columns)
}

pub(crate) fn offsets(lens: impl Iterator<Item = usize>) -> Result<OffsetBuffer<i32>, ArrowError> {
    let mut o = Vec::with_capacity(lens.size_hint().0 + 1);
    let mut acc: i32 = 0;
    o.push(0);
    for l in lens {
        let l = i32::try_from(l).map_err(|_| ArrowError::ComputeError("list too long".into()))?;
        acc = acc.checked_add(l).ok_or_else(|| ArrowError::ComputeError("column too long".into()))?;
        o.push(acc);
    }
    Ok(OffsetBuffer::new(ScalarBuffer::from(o)))
}

pub(crate) fn list(
    item: DataType,
    offsets: OffsetBuffer<i32>,
    values: ArrayRef,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef, ArrowError> {
    Ok(Arc::new(ListArray::try_new(Arc::new(Field::new("item", item, false)), offsets, values, nulls)?))
}

pub(crate) fn u32s(v: Vec<u32>) -> ArrayRef {
    Arc::new(UInt32Array::from(v))
}
pub(crate) fn u64s(v: Vec<u64>) -> ArrayRef {
    Arc::new(UInt64Array::from(v))
}
pub(crate) fn i64s(v: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(v))
}
pub(crate) fn u8s(v: Vec<u8>) -> ArrayRef {
    Arc::new(UInt8Array::from(v))
}
pub(crate) fn fixed16(v: Vec<u8>) -> Result<ArrayRef, ArrowError> {
    Ok(Arc::new(FixedSizeBinaryArray::try_new(16, Buffer::from_vec(v), None)?))
}
pub(crate) fn strings<'a>(v: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

// ---- typed column access for readers ----

fn missing(name: &str) -> ArrowError {
    ArrowError::SchemaError(format!("column {name} missing or of the wrong type"))
}

pub(crate) fn col<'a, T: arrow_array::ArrowPrimitiveType>(
    b: &'a RecordBatch,
    name: &str,
) -> Result<&'a PrimitiveArray<T>, ArrowError> {
    b.column_by_name(name).and_then(|c| c.as_primitive_opt::<T>()).ok_or_else(|| missing(name))
}

pub(crate) fn col_u32<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a PrimitiveArray<UInt32Type>, ArrowError> {
    col::<UInt32Type>(b, name)
}
pub(crate) fn col_u64<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a PrimitiveArray<UInt64Type>, ArrowError> {
    col::<UInt64Type>(b, name)
}
pub(crate) fn col_i64<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a PrimitiveArray<Int64Type>, ArrowError> {
    col::<Int64Type>(b, name)
}
pub(crate) fn col_u8<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a PrimitiveArray<UInt8Type>, ArrowError> {
    col::<UInt8Type>(b, name)
}
pub(crate) fn col_str<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a StringArray, ArrowError> {
    b.column_by_name(name).and_then(|c| c.as_string_opt::<i32>()).ok_or_else(|| missing(name))
}
pub(crate) fn col_fixed<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a FixedSizeBinaryArray, ArrowError> {
    b.column_by_name(name)
        .and_then(|c| c.as_fixed_size_binary_opt())
        .filter(|a| a.value_length() == 16)
        .ok_or_else(|| missing(name))
}
pub(crate) fn col_list<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a GenericListArray<i32>, ArrowError> {
    b.column_by_name(name).and_then(|c| c.as_list_opt::<i32>()).ok_or_else(|| missing(name))
}

/// The child values of a list column as a primitive array.
pub(crate) fn list_values<T: arrow_array::ArrowPrimitiveType>(
    l: &GenericListArray<i32>,
    name: &str,
) -> Result<PrimitiveArray<T>, ArrowError> {
    l.values().as_primitive_opt::<T>().cloned().ok_or_else(|| missing(name))
}

/// Offsets of a list column as usize ranges (validated monotonic by arrow).
pub(crate) fn list_range(l: &GenericListArray<i32>, i: usize) -> std::ops::Range<usize> {
    let o = l.value_offsets();
    o[i] as usize..o[i + 1] as usize
}

pub(crate) fn is_null(a: &dyn Array, i: usize) -> bool {
    a.is_null(i)
}
