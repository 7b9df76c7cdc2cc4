//! Per-worker cache of opened images, keyed by path and validated by mtime, over the
//! headers shared by all workers.
//!
//! An entry holds the parsed header and the file's memory map, so a hit costs one
//! `stat`. A changed mtime reopens the file (and the response is then never a 304,
//! as in iipsrv). Capacity is `MAX_IMAGE_METADATA_CACHE_SIZE` entries, least
//! recently used evicted first. On a miss the header is looked up in the shared cache
//! (path + mtime): found, the file is opened only when a tile must be decoded; not
//! found, the file is parsed and its header shared.

use super::{open, shared, Image, ImageError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The image histograms of one opened image, by view (horizontal angle, vertical angle,
/// quality layers), each computed once from a decoded tile and kept with the header.
#[derive(Default)]
pub struct Histograms(Mutex<Vec<(HistogramView, [u64; 256])>>);

/// The view a histogram was taken in: horizontal angle, vertical angle, quality layers.
pub type HistogramView = (i32, i32, i32);

/// Views of one image whose histograms are kept; more are computed on every use.
const MAX_HISTOGRAMS: usize = 16;

impl Histograms {
    /// The histogram of `view`, from `compute` the first time.
    pub fn get_or_compute<E>(
        &self,
        view: HistogramView,
        compute: impl FnOnce() -> Result<[u64; 256], E>,
    ) -> Result<[u64; 256], E> {
        let known = |v: &Vec<(HistogramView, [u64; 256])>| {
            v.iter().find(|(k, _)| *k == view).map(|(_, h)| *h)
        };
        if let Some(h) = self.0.lock().ok().as_deref().and_then(known) {
            return Ok(h);
        }
        let h = compute()?;
        if let Ok(mut kept) = self.0.lock() {
            if kept.len() < MAX_HISTOGRAMS && known(&kept).is_none() {
                kept.push((view, h));
            }
        }
        Ok(h)
    }
}

/// An image ready to serve, with the timestamp it was read at.
#[derive(Clone)]
pub struct Opened {
    pub image: Arc<dyn Image>,
    pub mtime: SystemTime,
    /// True when this worker had the file open with another mtime, so its header was
    /// read again for this request (such a request is never answered 304).
    pub reloaded: bool,
    /// The resolved file path (part of shared-cache keys).
    pub path: PathBuf,
    /// Image histograms computed so far, shared by every request for this file version.
    pub histograms: Arc<Histograms>,
}

impl Opened {
    /// The same image seen from view `(x, y)` (stack page, sequence file) decoding
    /// `layers` quality layers; itself when neither changes anything.
    pub fn for_view(
        &self,
        (x, y): (i32, i32),
        layers: i32,
    ) -> Result<std::borrow::Cow<'_, Opened>, ImageError> {
        let image = match self.image.view(x, y) {
            None => None,
            Some(image) => Some(image?),
        };
        let current = image.as_ref().unwrap_or(&self.image);
        let image = current.with_layers(layers).or(image);
        Ok(match image {
            None => std::borrow::Cow::Borrowed(self),
            Some(image) => std::borrow::Cow::Owned(Opened {
                image,
                ..self.clone()
            }),
        })
    }
}

struct Entry {
    image: Arc<dyn Image>,
    histograms: Arc<Histograms>,
    mtime: SystemTime,
    last_used: u64,
}

/// The cache; `capacity` `None` is unlimited, `Some(0)` disables caching.
pub struct ImageCache {
    entries: HashMap<PathBuf, Entry>,
    capacity: Option<usize>,
    clock: u64,
    hits: u64,
    misses: u64,
    shared: Option<&'static shm::Cache>,
}

impl ImageCache {
    pub fn new(capacity: Option<usize>) -> Self {
        ImageCache {
            entries: HashMap::new(),
            capacity,
            clock: 0,
            hits: 0,
            misses: 0,
            shared: None,
        }
    }

    /// Share headers with the other workers through `cache`.
    pub fn share_through(&mut self, cache: Option<&'static shm::Cache>) {
        self.shared = cache;
    }

    /// Opens `path` through the shared headers.
    fn open_shared(&self, path: &Path, mtime: SystemTime) -> Result<Arc<dyn Image>, ImageError> {
        let cache = match self.shared {
            Some(c) if self.capacity != Some(0) => c,
            _ => return open(path),
        };
        let nanos = mtime
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let key = shm::key(&[
            b"header",
            path.as_os_str().as_encoded_bytes(),
            &nanos.to_le_bytes(),
        ]);
        if let Some(info) = cache.get(key).as_deref().and_then(shared::decode) {
            log::debug!("image header from the shared cache: {}", path.display());
            return Ok(Arc::new(shared::Deferred::new(info, path.to_owned())));
        }
        let image = open(path)?;
        if cache.put(key, &shared::encode(image.info())) {
            log::debug!("image header shared: {}", path.display());
        }
        Ok(image)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Hits and misses since the last call.
    pub fn take_counts(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.hits),
            std::mem::take(&mut self.misses),
        )
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Opens `path` (a resolved, canonical file path), from cache when its mtime is unchanged.
    pub fn get(&mut self, path: &Path) -> Result<Opened, ImageError> {
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(ImageError::Open)?;
        self.get_at(path, mtime)
    }

    /// [`get`](Self::get) for a file whose modification time the caller has just read.
    pub fn get_at(&mut self, path: &Path, mtime: SystemTime) -> Result<Opened, ImageError> {
        self.clock += 1;
        // Only a file seen before with another mtime is a reload; a first open is not.
        let changed = match self.entries.get_mut(path) {
            Some(e) if e.mtime == mtime => {
                e.last_used = self.clock;
                self.hits += 1;
                return Ok(Opened {
                    image: e.image.clone(),
                    mtime,
                    reloaded: false,
                    path: path.to_owned(),
                    histograms: e.histograms.clone(),
                });
            }
            Some(_) => true,
            None => false,
        };
        self.misses += 1;
        let image = self.open_shared(path, mtime)?;
        let histograms = Arc::new(Histograms::default());
        if self.capacity != Some(0) {
            if let Some(cap) = self.capacity {
                while self.entries.len() >= cap && !self.entries.contains_key(path) {
                    let oldest = self
                        .entries
                        .iter()
                        .min_by_key(|(_, e)| e.last_used)
                        .map(|(k, _)| k.clone());
                    match oldest {
                        Some(k) => self.entries.remove(&k),
                        None => break,
                    };
                }
            }
            self.entries.insert(
                path.to_owned(),
                Entry {
                    image: image.clone(),
                    histograms: histograms.clone(),
                    mtime,
                    last_used: self.clock,
                },
            );
        }
        Ok(Opened {
            image,
            mtime,
            reloaded: changed,
            path: path.to_owned(),
            histograms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_histogram_is_computed_once_per_view() {
        let store = Histograms::default();
        let runs = Cell::new(0);
        let compute = |v: u64| {
            runs.set(runs.get() + 1);
            Ok::<_, ()>([v; 256])
        };
        assert_eq!(
            store.get_or_compute((0, 90, 0), || compute(1)),
            Ok([1; 256])
        );
        assert_eq!(
            store.get_or_compute((0, 90, 0), || compute(2)),
            Ok([1; 256])
        );
        assert_eq!(runs.get(), 1);
        // Another page of a stack has its own.
        assert_eq!(
            store.get_or_compute((1, 90, 0), || compute(3)),
            Ok([3; 256])
        );
        assert_eq!(runs.get(), 2);
        // A failure is not kept: the next request tries again.
        assert_eq!(store.get_or_compute((2, 90, 0), || Err(())), Err(()));
        assert_eq!(
            store.get_or_compute((2, 90, 0), || compute(4)),
            Ok([4; 256])
        );
    }

    #[test]
    fn beyond_the_bound_histograms_are_computed_every_time() {
        let store = Histograms::default();
        for x in 0..MAX_HISTOGRAMS as i32 {
            let _ = store.get_or_compute((x, 0, 0), || Ok::<_, ()>([0; 256]));
        }
        let extra = (MAX_HISTOGRAMS as i32, 0, 0);
        let _ = store.get_or_compute(extra, || Ok::<_, ()>([1; 256]));
        assert_eq!(
            store.get_or_compute(extra, || Ok::<_, ()>([2; 256])),
            Ok([2; 256])
        );
        assert_eq!(store.0.lock().unwrap().len(), MAX_HISTOGRAMS);
    }
}
