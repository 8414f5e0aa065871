//! The unsafe boundary: the one place where Python objects become raw memory.
//!
//! A step receives torch tensors as Python objects and never links against libtorch. Every
//! fact that makes it sound to view a tensor's memory as a Rust slice is checked here, for
//! every tensor of the call, before any slice exists and so before anything is written:
//!
//! - it is a `torch.Tensor` (an instance), strided (dense, `layout is torch.strided`) and on
//!   the CPU (`is_cpu`): its `data_ptr()` is an address in this process;
//! - it is contiguous (`is_contiguous()`) and not a lazily negated view (`is_neg()`): its
//!   `numel()` elements are the `numel() * element_size()` bytes from `data_ptr()`, in order;
//! - its dtype is `float32`, `bfloat16` or `float16`, whose layouts are those of `f32`,
//!   [`optkern::bf16`] and [`optkern::f16`]; the address is non-null and aligned to the element
//!   size (a tensor with no element gets an empty slice and its address is not used);
//! - the tensors a call writes (weights, state buffers, model copies, step counters) overlap
//!   no other tensor of the call, and the gradients (only read) overlap no written one: the
//!   `&mut` slices are exclusive and the shared ones are not written through another slice.
//!
//! What it cannot check, and documents instead: the memory stays valid while the step runs
//! with the GIL released because the step holds a reference to every tensor object (so to
//! its storage); another Python thread that resizes, frees or writes one of these tensors
//! during the step races with it, as it would with a torch operation that releases the GIL;
//! and a `torch.Tensor` subclass that overrides `data_ptr`, `numel` or the other properties
//! above with Python code that lies about its memory defeats the checks (torch's own
//! subclasses, `Parameter` and the local tensors of DTensors, do not override them).
use optkern::{DType, Element};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// torch's name of a dtype, for error messages.
pub fn torch_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float32",
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
    }
}

/// torch's dtype and layout objects, looked up once.
struct Torch {
    float32: Py<PyAny>,
    bfloat16: Py<PyAny>,
    float16: Py<PyAny>,
    strided: Py<PyAny>,
    tensor: Py<PyAny>,
}

static TORCH: PyOnceLock<Torch> = PyOnceLock::new();

fn torch(py: Python<'_>) -> PyResult<&'static Torch> {
    TORCH.get_or_try_init(py, || {
        let t = py.import("torch")?;
        Ok(Torch {
            float32: t.getattr("float32")?.unbind(),
            bfloat16: t.getattr("bfloat16")?.unbind(),
            float16: t.getattr("float16")?.unbind(),
            strided: t.getattr("strided")?.unbind(),
            tensor: t.getattr("Tensor")?.unbind(),
        })
    })
}

/// A tensor that passed [`inspect`]: its address, length and type. Only [`Checked`] turns it
/// into a slice.
#[derive(Clone, Copy, Debug)]
pub struct Raw {
    addr: usize,
    pub len: usize,
    pub dtype: DType,
}

/// Whether the step writes a tensor (weights, state, model copy, step counter) or only reads
/// it (gradient).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Checks one tensor (all but the overlaps, which [`check_overlaps`] checks across the call).
/// `what` names it in the error: "param_groups[0] parameter 3 gradient".
pub fn inspect(obj: &Bound<'_, PyAny>, what: &dyn Fn() -> String) -> PyResult<Raw> {
    let py = obj.py();
    let t = torch(py)?;
    let fail_type = |why: String| PyTypeError::new_err(format!("optkern: {}: {why}", what()));
    let fail_value = |why: String| PyValueError::new_err(format!("optkern: {}: {why}", what()));
    if !obj.is_instance(t.tensor.bind(py))? {
        return Err(fail_type(format!(
            "is not a torch.Tensor (a {})",
            type_name(obj)
        )));
    }
    let layout = obj.getattr(intern!(py, "layout"))?;
    if !layout.is(t.strided.bind(py)) {
        return Err(fail_type(format!(
            "is a {} tensor; optkern steps dense (strided) tensors only",
            layout.str()?
        )));
    }
    if !obj.getattr(intern!(py, "is_cpu"))?.extract::<bool>()? {
        let device = obj.getattr(intern!(py, "device"))?;
        return Err(fail_type(format!(
            "is on {}; optkern steps CPU tensors only",
            device.str()?
        )));
    }
    let dtype_obj = obj.getattr(intern!(py, "dtype"))?;
    let dtype = if dtype_obj.is(t.float32.bind(py)) {
        DType::F32
    } else if dtype_obj.is(t.bfloat16.bind(py)) {
        DType::BF16
    } else if dtype_obj.is(t.float16.bind(py)) {
        DType::F16
    } else {
        let name = dtype_obj.str()?.to_string();
        let hint = if name == "torch.float64" {
            "; the kernels compute in float32, so float64 is not supported (use torch.optim)"
        } else {
            ""
        };
        return Err(fail_type(format!(
            "has dtype {name}; optkern supports torch.float32, torch.bfloat16 and torch.float16{hint}"
        )));
    };
    if !obj
        .call_method0(intern!(py, "is_contiguous"))?
        .extract::<bool>()?
    {
        return Err(fail_value(
            "is not contiguous; optkern steps contiguous tensors only (call .contiguous() on the parameter before building the optimizer)".into(),
        ));
    }
    if obj.call_method0(intern!(py, "is_neg"))?.extract::<bool>()? {
        return Err(fail_value(
            "is a lazily negated view (is_neg()); call .resolve_neg() first".into(),
        ));
    }
    let len: usize = obj.call_method0(intern!(py, "numel"))?.extract()?;
    let addr: usize = obj.call_method0(intern!(py, "data_ptr"))?.extract()?;
    if len > 0 {
        if addr == 0 {
            return Err(fail_value("has a null data pointer".into()));
        }
        if !addr.is_multiple_of(dtype.size()) {
            return Err(fail_value(format!(
                "data pointer {addr:#x} is not aligned to its {}-byte elements",
                dtype.size()
            )));
        }
        if len
            .checked_mul(dtype.size())
            .is_none_or(|b| addr.checked_add(b).is_none())
        {
            return Err(fail_value(
                "extends past the end of the address space".into(),
            ));
        }
    }
    Ok(Raw { addr, len, dtype })
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Every tensor of one call, checked: [`inspect`] on each, then [`check_overlaps`] across all.
/// The only way to get slices.
pub struct Checked {
    raws: Vec<Raw>,
}

impl Checked {
    /// Checks that no written tensor overlaps another tensor of the call, with `access[i]`
    /// saying whether `raws[i]` is written and `name(i)` naming it in the error.
    pub fn new(
        raws: Vec<Raw>,
        access: &[Access],
        name: &dyn Fn(usize) -> String,
    ) -> PyResult<Checked> {
        check_overlaps(&raws, access, name)?;
        Ok(Checked { raws })
    }

    /// The number of elements of tensor `i`.
    pub fn len(&self, i: usize) -> usize {
        self.raws[i].len
    }

    /// The tensor `i` (one the call only reads) as a shared slice of `E`, which must be its
    /// dtype.
    ///
    /// # Safety
    /// The tensor is not written while the slice lives (no `slice_mut` of it: the overlap
    /// check ensures no written tensor shares its memory), and the tensor objects outlive the
    /// slice and are not resized or freed meanwhile (see the module's documentation).
    pub unsafe fn slice<'a, E: Element>(&self, i: usize) -> &'a [E] {
        let raw = self.raws[i];
        assert_eq!(
            raw.dtype,
            E::DTYPE,
            "optkern: internal dtype dispatch error"
        );
        if raw.len == 0 {
            return &[];
        }
        // SAFETY: as in `slice_mut`; shared slices may alias each other (gradients only read).
        unsafe { std::slice::from_raw_parts(raw.addr as *const E, raw.len) }
    }

    /// The tensor `i` as a slice of `E`, which must be its dtype.
    ///
    /// # Safety
    /// Each index is taken at most once over the life of the slices, and the tensor objects
    /// outlive them and are not resized or freed meanwhile (see the module's documentation).
    pub unsafe fn slice_mut<'a, E: Element>(&self, i: usize) -> &'a mut [E] {
        let raw = self.raws[i];
        assert_eq!(
            raw.dtype,
            E::DTYPE,
            "optkern: internal dtype dispatch error"
        );
        if raw.len == 0 {
            return &mut [];
        }
        // SAFETY: `inspect` checked that the tensor is a contiguous CPU tensor of `raw.len`
        // elements of this type at `raw.addr`, non-null and aligned; `check_overlaps` that no
        // other tensor of the call overlaps it when either is written; the caller takes the
        // index once and keeps the tensor alive and unresized while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(raw.addr as *mut E, raw.len) }
    }
}

/// Fails if a written tensor shares a byte with any other tensor of the call.
fn check_overlaps(raws: &[Raw], access: &[Access], name: &dyn Fn(usize) -> String) -> PyResult<()> {
    let mut spans: Vec<(usize, usize, usize)> = raws
        .iter()
        .enumerate()
        .filter(|(_, r)| r.len > 0)
        .map(|(i, r)| (r.addr, r.addr + r.len * r.dtype.size(), i))
        .collect();
    spans.sort_unstable();
    // The span reaching furthest so far, among all and among written ones.
    let mut far_all: Option<(usize, usize)> = None;
    let mut far_written: Option<(usize, usize)> = None;
    for &(start, end, i) in &spans {
        let written = access[i] == Access::Write;
        let against = if written { far_all } else { far_written };
        if let Some((far_end, j)) = against
            && start < far_end
        {
            let (a, b) = (name(j), name(i));
            return Err(PyValueError::new_err(format!(
                "optkern: {a} and {b} share memory; each tensor a step writes must have memory of its own"
            )));
        }
        if far_all.is_none_or(|(e, _)| end > e) {
            far_all = Some((end, i));
        }
        if written && far_written.is_none_or(|(e, _)| end > e) {
            far_written = Some((end, i));
        }
    }
    Ok(())
}
