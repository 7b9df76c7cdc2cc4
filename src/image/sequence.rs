//! Image sequences (docs/sources.md §7): one image per view angle, in files
//! `<stem><X>_<Y>.<ext>` of one directory. The sequence answers for its first file
//! (`000_090`) and opens the file of any other view on request.

use super::{EncodedTile, Image, ImageError, ImageInfo, Tile};
use std::path::PathBuf;
use std::sync::Arc;

/// A sequence, showing its `000_090` image.
pub struct SequenceImage {
    first: Arc<dyn Image>,
    info: ImageInfo,
    dir: PathBuf,
    stem: String,
    ext: String,
}

impl SequenceImage {
    /// `first` is the opened `000_090` file; the view lists come from the directory.
    pub fn new(
        first: Arc<dyn Image>,
        (dir, stem, ext): (PathBuf, String, String),
        horizontal: Vec<i32>,
        vertical: Vec<i32>,
    ) -> SequenceImage {
        let mut info = first.info().clone();
        info.horizontal_views = horizontal;
        info.vertical_views = vertical;
        SequenceImage {
            first,
            info,
            dir,
            stem,
            ext,
        }
    }
}

impl Image for SequenceImage {
    fn info(&self) -> &ImageInfo {
        &self.info
    }
    fn encoded_tile(&self, k: u32, t: u32) -> Result<Option<EncodedTile>, ImageError> {
        self.first.encoded_tile(k, t)
    }
    fn decode_tile(&self, k: u32, t: u32) -> Result<Tile, ImageError> {
        self.first.decode_tile(k, t)
    }
    fn decode_region(
        &self,
        k: u32,
        rect: (u32, u32, u32, u32),
    ) -> Option<Result<Tile, ImageError>> {
        self.first.decode_region(k, rect)
    }
    fn with_layers(&self, l: i32) -> Option<Arc<dyn Image>> {
        self.first.with_layers(l)
    }

    fn view(&self, x: i32, y: i32) -> Option<Result<Arc<dyn Image>, ImageError>> {
        if (x, y) == (0, 90) {
            return None;
        }
        if !self.info.horizontal_views.contains(&x) && !self.info.vertical_views.contains(&y) {
            return Some(Err(ImageError::NoSuchView(x)));
        }
        let path = self
            .dir
            .join(format!("{}{x:03}_{y:03}.{}", self.stem, self.ext));
        // Each view's file must be a file of this directory, not a link out of it.
        let inside = path
            .canonicalize()
            .is_ok_and(|p| p.parent() == Some(self.dir.as_path()));
        if !inside {
            return Some(Err(ImageError::NoSuchView(x)));
        }
        Some(super::open(&path))
    }
}
