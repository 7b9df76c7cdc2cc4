//! TurboJPEG on its raw API, one compressor and one decompressor per thread: the
//! `turbojpeg` wrapper has neither partial decoding (cropping) nor the fast DCT that
//! iipsrv encodes with.

use std::cell::RefCell;
use turbojpeg::raw;

/// A TurboJPEG instance, destroyed with its thread.
pub struct Handle(raw::tjhandle);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { raw::tj3Destroy(self.0) }
    }
}

impl Handle {
    pub fn raw(&self) -> raw::tjhandle {
        self.0
    }

    /// The last error of this instance.
    pub fn error(&self) -> String {
        // SAFETY: the handle is valid; the message is a NUL-terminated string it owns.
        let msg = unsafe { std::ffi::CStr::from_ptr(raw::tj3GetErrorStr(self.0)) };
        msg.to_string_lossy().trim().to_string()
    }

    /// Sets a parameter; false if TurboJPEG refuses it.
    pub fn set(&self, param: raw::TJPARAM, value: i32) -> bool {
        // SAFETY: setting a parameter of a valid handle.
        unsafe { raw::tj3Set(self.0, param as libc::c_int, value) == 0 }
    }

    /// Reads a parameter.
    pub fn get(&self, param: raw::TJPARAM) -> i32 {
        // SAFETY: reading a parameter of a valid handle.
        unsafe { raw::tj3Get(self.0, param as libc::c_int) }
    }
}

thread_local! {
    static COMPRESSOR: RefCell<Option<Handle>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

fn with_handle<T>(
    cell: &'static std::thread::LocalKey<RefCell<Option<Handle>>>,
    kind: raw::TJINIT,
    f: impl FnOnce(&Handle) -> T,
) -> Result<T, String> {
    cell.with(|c| {
        let mut slot = c.borrow_mut();
        if slot.is_none() {
            // SAFETY: plain constructor; a null handle is checked.
            let h = unsafe { raw::tj3Init(kind as libc::c_int) };
            if h.is_null() {
                return Err("cannot create a TurboJPEG instance".to_string());
            }
            *slot = Some(Handle(h));
        }
        Ok(f(slot.as_ref().expect("initialised above")))
    })
}

/// Runs `f` with this thread's compressor; `Err` when none can be made.
pub fn compressor<T>(f: impl FnOnce(&Handle) -> T) -> Result<T, String> {
    with_handle(&COMPRESSOR, raw::TJINIT_TJINIT_COMPRESS, f)
}

/// Runs `f` with this thread's decompressor; `Err` when none can be made.
pub fn decompressor<T>(f: impl FnOnce(&Handle) -> T) -> Result<T, String> {
    with_handle(&DECOMPRESSOR, raw::TJINIT_TJINIT_DECOMPRESS, f)
}
