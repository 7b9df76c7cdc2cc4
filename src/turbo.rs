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

/// Most scans decoded in one progressive JPEG (libjpeg-turbo's own tools suggest 500).
pub const MAX_SCANS: i32 = 500;
/// Scans any progressive JPEG may have, however large: libjpeg's own scripts use 10
/// and the largest encoders' about 20.
pub const FREE_SCANS: u64 = 32;
/// Pixel passes (pixels × scans) one decode may make beyond [`FREE_SCANS`]: about a
/// second of entropy decoding on one core.
pub const SCAN_WORK: u64 = 1 << 28;

/// Refuses a progressive JPEG whose scans would make decoding its `pixels` take far
/// longer than any ordinary file: each scan is a pass over the whole image, and a
/// legal file may repeat them by the thousand. Counted before decoding (an SOS marker
/// cannot occur inside entropy-coded data, where 0xFF is always stuffed), so a
/// refusal costs a pass over the bytes, not the decode that the scan limit would
/// stop only after [`MAX_SCANS`] of them.
pub fn check_scans(bytes: &[u8], pixels: u64) -> Result<(), String> {
    check_scan_count(count_scans(bytes), pixels)
}

/// The scans (SOS markers) of the JPEG `bytes`.
pub fn count_scans(bytes: &[u8]) -> u64 {
    memchr::memmem::find_iter(bytes, b"\xFF\xDA").count() as u64
}

/// [`check_scans`] for a JPEG of `pixels` whose scans are already counted.
pub fn check_scan_count(scans: u64, pixels: u64) -> Result<(), String> {
    let allowed = (SCAN_WORK / pixels.max(1)).clamp(FREE_SCANS, MAX_SCANS as u64);
    if scans > allowed {
        return Err(format!(
            "progressive JPEG of {pixels} pixels with {scans} scans (at most {allowed} decoded)"
        ));
    }
    Ok(())
}

/// Most memory, in MB, libjpeg-turbo may take for one decode beyond the output buffer
/// (the coefficient buffer of a progressive image lives there).
pub const MAX_MEMORY_MB: i32 = 256;

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
            let handle = Handle(h);
            if kind == raw::TJINIT_TJINIT_DECOMPRESS {
                // A legal progressive JPEG can repeat scans by the thousand, each a full
                // pass over the image: cap the scans and the coefficient memory so one
                // file cannot hold a worker for minutes or take gigabytes.
                handle.set(raw::TJPARAM_TJPARAM_SCANLIMIT, MAX_SCANS);
                handle.set(raw::TJPARAM_TJPARAM_MAXMEMORY, MAX_MEMORY_MB);
            }
            *slot = Some(handle);
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

/// JPEG inputs for tests of the decoders' limits.
#[cfg(test)]
pub mod testing {
    /// A 256x256 RGB JPEG of a busy pattern, progressive when asked.
    pub fn test_jpeg(progressive: bool) -> Vec<u8> {
        let data: Vec<u8> = (0..256 * 256 * 3).map(|i| (i * 31 % 251) as u8).collect();
        let r = crate::pipeline::Raster {
            width: 256,
            height: 256,
            channels: 3,
            data,
        };
        let set = |on: bool| {
            super::compressor(|tj| tj.set(super::raw::TJPARAM_TJPARAM_PROGRESSIVE, on as i32))
                .unwrap()
        };
        set(progressive);
        let j = crate::encode::jpeg::encode(&r, 80).unwrap();
        set(false);
        j
    }

    /// `j` (a progressive JPEG) with its last scan repeated `n` more times: still a
    /// legal file, and each repeat is one more pass over the whole image.
    pub fn repeat_last_scan(j: &[u8], n: usize) -> Vec<u8> {
        let last_sos = j.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
        let eoi = j.len() - 2;
        let mut out = j[..eoi].to_vec();
        for _ in 0..n {
            out.extend_from_slice(&j[last_sos..eoi]);
        }
        out.extend_from_slice(&j[eoi..]);
        out
    }
}
