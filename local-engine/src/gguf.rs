//! A small reader for GGUF file headers: it checks that a model file is whole
//! before llama.cpp sees it (so a bad file gets a precise reason instead of a
//! null pointer) and reads the facts `/v1/models` reports (architecture,
//! parameter counts, experts, quantization) from the metadata and tensor table.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// One metadata value; arrays keep only their length because the big ones
/// (the tokenizer's vocabulary) are not needed here.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array { len: u64 },
}

impl MetaValue {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::Uint(v) => Some(v),
            MetaValue::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub n_elements: u64,
    pub ggml_type: u32,
    pub offset: u64,
}

/// Everything read from a GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufFile {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    /// Where the tensor data starts, after alignment padding.
    pub data_offset: u64,
    pub file_len: u64,
}

/// Why a file is not a usable GGUF model; the caller adds the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufProblem(pub String);

impl From<io::Error> for GgufProblem {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            GgufProblem("the header ends early: the file is truncated".to_owned())
        } else {
            GgufProblem(e.to_string())
        }
    }
}

const MAX_STRING: u64 = 64 << 20;
const MAX_DIMS: u32 = 8;

struct Reader<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read> Reader<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], GgufProblem> {
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf)?;
        self.pos += N as u64;
        Ok(buf)
    }
    fn u32(&mut self) -> Result<u32, GgufProblem> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Result<u64, GgufProblem> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn skip(&mut self, n: u64) -> Result<(), GgufProblem> {
        if self.pos.saturating_add(n) > self.len {
            return Err(GgufProblem(
                "the header ends early: the file is truncated".to_owned(),
            ));
        }
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        if copied != n {
            return Err(GgufProblem(
                "the header ends early: the file is truncated".to_owned(),
            ));
        }
        self.pos += n;
        Ok(())
    }
    fn string(&mut self) -> Result<String, GgufProblem> {
        let n = self.u64()?;
        if n > MAX_STRING || self.pos.saturating_add(n) > self.len {
            return Err(GgufProblem(format!(
                "corrupt header or truncated file: a string of {n} bytes at offset {} does not fit in the file",
                self.pos
            )));
        }
        let mut buf = vec![0u8; n as usize];
        self.inner.read_exact(&mut buf)?;
        self.pos += n;
        String::from_utf8(buf).map_err(|_| {
            GgufProblem(format!(
                "corrupt header: invalid UTF-8 before offset {}",
                self.pos
            ))
        })
    }

    /// Reads one value of GGUF type `ty`; strings inside arrays are skipped.
    fn value(&mut self, ty: u32) -> Result<MetaValue, GgufProblem> {
        Ok(match ty {
            0 => MetaValue::Uint(u64::from(self.bytes::<1>()?[0])),
            1 => MetaValue::Int(i64::from(i8::from_le_bytes(self.bytes()?))),
            2 => MetaValue::Uint(u64::from(u16::from_le_bytes(self.bytes()?))),
            3 => MetaValue::Int(i64::from(i16::from_le_bytes(self.bytes()?))),
            4 => MetaValue::Uint(u64::from(self.u32()?)),
            5 => MetaValue::Int(i64::from(i32::from_le_bytes(self.bytes()?))),
            6 => MetaValue::Float(f64::from(f32::from_le_bytes(self.bytes()?))),
            7 => MetaValue::Bool(self.bytes::<1>()?[0] != 0),
            8 => MetaValue::Str(self.string()?),
            9 => {
                let elem = self.u32()?;
                let len = self.u64()?;
                match scalar_size(elem) {
                    Some(size) => self.skip(len.saturating_mul(size))?,
                    None if elem == 8 => {
                        for _ in 0..len {
                            let n = self.u64()?;
                            self.skip(n)?;
                        }
                    }
                    None => {
                        return Err(GgufProblem(format!(
                            "corrupt header: unsupported array element type {elem}"
                        )))
                    }
                }
                MetaValue::Array { len }
            }
            10 => MetaValue::Uint(self.u64()?),
            11 => MetaValue::Int(i64::from_le_bytes(self.bytes()?)),
            12 => MetaValue::Float(f64::from_le_bytes(self.bytes()?)),
            other => {
                return Err(GgufProblem(format!(
                    "corrupt header: unknown value type {other} at offset {}",
                    self.pos
                )))
            }
        })
    }
}

fn scalar_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

/// Bytes per block and elements per block of a ggml tensor type, for the
/// truncation check. Unknown (newer) types return `None` and skip the check.
fn type_block(ty: u32) -> Option<(u64, u64)> {
    Some(match ty {
        0 => (4, 1),
        1 | 30 => (2, 1),
        2 | 20 => (18, 32),
        3 => (20, 32),
        6 => (22, 32),
        7 => (24, 32),
        8 => (34, 32),
        9 => (36, 32),
        10 => (84, 256),
        11 | 21 => (110, 256),
        12 => (144, 256),
        13 => (176, 256),
        14 => (210, 256),
        15 => (292, 256),
        16 | 35 => (66, 256),
        17 => (74, 256),
        18 => (98, 256),
        19 => (50, 256),
        22 => (82, 256),
        23 => (136, 256),
        24 => (1, 1),
        25 => (2, 1),
        26 => (4, 1),
        27 | 28 => (8, 1),
        29 => (56, 256),
        34 => (54, 256),
        39 => (17, 32),
        _ => return None,
    })
}

/// Reads and checks the header of the GGUF file at `path`.
pub fn read(path: &Path) -> Result<GgufFile, GgufProblem> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => GgufProblem("the file does not exist".to_owned()),
        _ => GgufProblem(format!("cannot read it: {e}")),
    })?;
    if !meta.is_file() {
        return Err(GgufProblem("it is not a regular file".to_owned()));
    }
    let file = File::open(path).map_err(|e| GgufProblem(format!("cannot open it: {e}")))?;
    let mut r = Reader {
        inner: BufReader::with_capacity(1 << 16, file),
        pos: 0,
        len: meta.len(),
    };
    let magic: [u8; 4] = r.bytes().map_err(|_| {
        GgufProblem(format!(
            "it is not a GGUF file: only {} bytes long",
            meta.len()
        ))
    })?;
    if &magic != b"GGUF" {
        return Err(GgufProblem(format!(
            "it is not a GGUF file: it starts with bytes {magic:02x?}, not \"GGUF\""
        )));
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(GgufProblem(format!(
            "unsupported GGUF version {version} (2 and 3 are supported)"
        )));
    }
    let n_tensors = r.u64()?;
    let n_kv = r.u64()?;
    // Each entry takes at least 8 bytes, so larger counts mean a corrupt header.
    if n_tensors > meta.len() / 8 || n_kv > meta.len() / 8 {
        return Err(GgufProblem(format!(
            "corrupt header: it claims {n_tensors} tensors and {n_kv} metadata entries"
        )));
    }
    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = r.string()?;
        let ty = r.u32()?;
        let value = r.value(ty)?;
        metadata.insert(key, value);
    }
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = r.string()?;
        let n_dims = r.u32()?;
        if n_dims > MAX_DIMS {
            return Err(GgufProblem(format!(
                "corrupt header: tensor \"{name}\" has {n_dims} dimensions"
            )));
        }
        let mut n_elements: u64 = 1;
        for _ in 0..n_dims {
            n_elements = n_elements.saturating_mul(r.u64()?);
        }
        let ggml_type = r.u32()?;
        let offset = r.u64()?;
        tensors.push(TensorInfo {
            name,
            n_elements,
            ggml_type,
            offset,
        });
    }
    let alignment = metadata
        .get("general.alignment")
        .and_then(MetaValue::as_u64)
        .filter(|a| *a > 0)
        .unwrap_or(32);
    let data_offset = r.pos.div_ceil(alignment) * alignment;
    let file = GgufFile {
        version,
        metadata,
        tensors,
        data_offset,
        file_len: meta.len(),
    };
    file.check_data()?;
    Ok(file)
}

impl GgufFile {
    /// Every tensor's bytes must lie inside the file.
    fn check_data(&self) -> Result<(), GgufProblem> {
        let mut need = self.data_offset;
        for t in &self.tensors {
            let Some((bytes, per)) = type_block(t.ggml_type) else {
                continue;
            };
            let size = t.n_elements.div_ceil(per).saturating_mul(bytes);
            need = need.max(
                self.data_offset
                    .saturating_add(t.offset)
                    .saturating_add(size),
            );
        }
        if need > self.file_len {
            return Err(GgufProblem(format!(
                "the file is truncated: its tensors need {need} bytes but it has {}",
                self.file_len
            )));
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(MetaValue::as_str)
    }

    /// `{arch}.{suffix}` as an integer.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.get(&format!("{arch}.{suffix}"))
            .and_then(MetaValue::as_u64)
    }

    pub fn total_params(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_elements).sum()
    }

    /// Parameters used per token: routed expert tensors count only for the
    /// share of experts a token is sent to (`expert_used_count / expert_count`);
    /// shared experts and everything else always count.
    pub fn active_params(&self) -> u64 {
        let (Some(count), Some(used)) = (
            self.arch_u64("expert_count"),
            self.arch_u64("expert_used_count"),
        ) else {
            return self.total_params();
        };
        if count == 0 {
            return self.total_params();
        }
        let mut active: u128 = 0;
        for t in &self.tensors {
            if t.name.contains("_exps") {
                active += u128::from(t.n_elements) * u128::from(used) / u128::from(count);
            } else {
                active += u128::from(t.n_elements);
            }
        }
        u64::try_from(active).unwrap_or(u64::MAX)
    }

    /// The quantization named by `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn file_type(&self) -> Option<String> {
        let ft = self.get("general.file_type").and_then(MetaValue::as_u64)?;
        let name = match ft {
            0 => "F32",
            1 => "F16",
            2 => "Q4_0",
            3 => "Q4_1",
            7 => "Q8_0",
            8 => "Q5_0",
            9 => "Q5_1",
            10 => "Q2_K",
            11 => "Q3_K_S",
            12 => "Q3_K_M",
            13 => "Q3_K_L",
            14 => "Q4_K_S",
            15 => "Q4_K_M",
            16 => "Q5_K_S",
            17 => "Q5_K_M",
            18 => "Q6_K",
            19 => "IQ2_XXS",
            20 => "IQ2_XS",
            21 => "Q2_K_S",
            22 => "IQ3_XS",
            23 => "IQ3_XXS",
            24 => "IQ1_S",
            25 => "IQ4_NL",
            26 => "IQ3_S",
            27 => "IQ3_M",
            28 => "IQ2_S",
            29 => "IQ2_M",
            30 => "IQ4_XS",
            31 => "IQ1_M",
            32 => "BF16",
            36 => "TQ1_0",
            37 => "TQ2_0",
            38 => "MXFP4_MOE",
            other => return Some(format!("file_type {other}")),
        };
        Some(name.to_owned())
    }

    /// The facts `/v1/models` shows, keyed by name.
    pub fn details(&self) -> BTreeMap<String, serde_json::Value> {
        use serde_json::json;
        let mut d = BTreeMap::new();
        if let Some(arch) = self.architecture() {
            d.insert("architecture".to_owned(), json!(arch));
        }
        d.insert("parameters".to_owned(), json!(self.total_params()));
        if let Some(n) = self.arch_u64("expert_count") {
            d.insert("expert_count".to_owned(), json!(n));
            if let Some(u) = self.arch_u64("expert_used_count") {
                d.insert("expert_used_count".to_owned(), json!(u));
            }
            d.insert("active_parameters".to_owned(), json!(self.active_params()));
        }
        if let Some(q) = self.file_type() {
            d.insert("quantization".to_owned(), json!(q));
        }
        if let Some(n) = self.arch_u64("context_length") {
            d.insert("trained_context_tokens".to_owned(), json!(n));
        }
        d.insert("file_bytes".to_owned(), json!(self.file_len));
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ws-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    fn gguf_bytes(tensor_len: u64, data: usize) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(1u64.to_le_bytes()); // tensors
        b.extend(2u64.to_le_bytes()); // kv
        let key = b"general.architecture";
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key);
        b.extend(8u32.to_le_bytes());
        b.extend(5u64.to_le_bytes());
        b.extend(b"llama");
        let key = b"llama.expert_count";
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key);
        b.extend(4u32.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        let name = b"blk.0.ffn_up_exps.weight";
        b.extend((name.len() as u64).to_le_bytes());
        b.extend(name);
        b.extend(1u32.to_le_bytes());
        b.extend(tensor_len.to_le_bytes());
        b.extend(0u32.to_le_bytes()); // F32
        b.extend(0u64.to_le_bytes());
        while !b.len().is_multiple_of(32) {
            b.push(0);
        }
        b.extend(std::iter::repeat_n(0u8, data));
        b
    }

    #[test]
    fn reads_metadata_and_tensors() {
        let p = write("ok.gguf", &gguf_bytes(16, 64));
        let f = read(&p).unwrap();
        assert_eq!(f.architecture(), Some("llama"));
        assert_eq!(f.arch_u64("expert_count"), Some(8));
        assert_eq!(f.total_params(), 16);
        assert_eq!(f.tensors[0].name, "blk.0.ffn_up_exps.weight");
    }

    #[test]
    fn truncated_tensor_data_is_named() {
        let p = write("short.gguf", &gguf_bytes(16, 10));
        let e = read(&p).unwrap_err();
        assert!(e.0.contains("truncated"), "{}", e.0);
        assert!(e.0.contains("needs") || e.0.contains("need"), "{}", e.0);
    }

    #[test]
    fn wrong_magic_and_missing_files_are_named() {
        let p = write("junk.gguf", b"not a model at all");
        assert!(read(&p).unwrap_err().0.contains("not a GGUF file"));
        let e = read(Path::new("/nonexistent/x.gguf")).unwrap_err();
        assert_eq!(e.0, "the file does not exist");
        let full = gguf_bytes(16, 64);
        let p = write("cut.gguf", &full[..40]);
        let e = read(&p).unwrap_err();
        assert!(e.0.contains("truncated"), "{}", e.0);
    }
}
