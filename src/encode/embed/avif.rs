//! Adds metadata to an AVIF as ravif writes it, by walking and rebuilding its ISO-BMFF
//! (HEIF) boxes: an ICC profile as a `colr` property, EXIF and XMP as items.

/// One ISO-BMFF box: (type, start of the whole box, start of its payload, end).
type BmffBox = ([u8; 4], usize, usize, usize);

/// The boxes between `from` and `to`.
fn bmff_boxes(b: &[u8], from: usize, to: usize) -> Option<Vec<BmffBox>> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let size = u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize;
        let kind: [u8; 4] = b.get(at + 4..at + 8)?.try_into().ok()?;
        // 64-bit and to-the-end sizes are not what ravif writes.
        if size < 8 || at + size > to {
            return None;
        }
        out.push((kind, at, at + 8, at + size));
        at += size;
    }
    Some(out)
}

/// A box: big-endian size, type, payload.
fn bmff_box(kind: &[u8; 4], payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = u32::try_from(8 + payload.len())
        .ok()?
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(payload);
    Some(out)
}

/// A big-endian u16 at `o`.
fn be16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(o..o + 2)?.try_into().ok()?))
}

/// A big-endian u32 at `o`.
fn be32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// An AVIF as ravif writes it: `ftyp`, then `meta` (with `pitm`, an `iloc` of version 0
/// with 4-byte offsets and lengths and no base offset, `iinf`, maybe `iref`, `iprp`),
/// then `mdat`, last. Metadata is added by rebuilding `meta` ([`Avif::rebuild`]).
struct Avif<'a> {
    b: &'a [u8],
    meta: BmffBox,
    mdat: BmffBox,
    /// The children of `meta`.
    children: Vec<BmffBox>,
    /// The primary item's id.
    primary: u16,
    /// `iloc`'s items: id and extents (file offset, length).
    items: Vec<(u16, Vec<(u32, u32)>)>,
}

impl<'a> Avif<'a> {
    fn parse(b: &'a [u8]) -> Option<Avif<'a>> {
        let top = bmff_boxes(b, 0, b.len())?;
        let meta = *top.iter().find(|x| &x.0 == b"meta")?;
        let mdat = *top.iter().find(|x| &x.0 == b"mdat")?;
        if mdat.1 < meta.3 || top.last()?.1 != mdat.1 {
            return None;
        }
        // meta is a full box: 4 bytes of version and flags before its children.
        let children = bmff_boxes(b, meta.2 + 4, meta.3)?;
        let child = |k: &[u8; 4]| children.iter().find(|x| &x.0 == k).copied();
        let primary = be16(b, child(b"pitm")?.2 + 4)?;
        let iloc = child(b"iloc")?;
        if *b.get(iloc.2)? != 0 || be16(b, iloc.2 + 4)? & 0xFFF0 != 0x4400 {
            return None;
        }
        let mut items = Vec::new();
        let mut at = iloc.2 + 8;
        for _ in 0..be16(b, iloc.2 + 6)? {
            let (id, extents) = (be16(b, at)?, be16(b, at + 4)?);
            at += 6;
            let mut ex = Vec::new();
            for _ in 0..extents {
                ex.push((be32(b, at)?, be32(b, at + 4)?));
                at += 8;
            }
            items.push((id, ex));
        }
        (at == iloc.3).then_some(Avif {
            b,
            meta,
            mdat,
            children,
            primary,
            items,
        })
    }

    fn child(&self, kind: &[u8; 4]) -> Option<BmffBox> {
        self.children.iter().find(|x| &x.0 == kind).copied()
    }

    /// The whole box `x` (header included).
    fn whole(&self, x: &BmffBox) -> &'a [u8] {
        &self.b[x.1..x.3]
    }

    /// The file with every child of `meta` but `iloc` replaced by what `edit` makes of it,
    /// and `added` (an item id and its data) stored at the end of `mdat`. `iloc` is
    /// written anew: the new item, and every other offset moved by what `meta` grew.
    fn rebuild(
        &self,
        edit: impl Fn(&BmffBox) -> Option<Vec<u8>>,
        added: Option<(u16, &[u8])>,
    ) -> Option<Vec<u8>> {
        let (b, meta, mdat) = (self.b, self.meta, self.mdat);
        let iloc = self.child(b"iloc")?;
        let edited = self
            .children
            .iter()
            .map(|c| {
                if c.1 == iloc.1 {
                    Some(Vec::new())
                } else {
                    edit(c)
                }
            })
            .collect::<Option<Vec<_>>>()?;
        let data = added.map_or(&[][..], |a| a.1);
        let iloc_at = |delta: u32, data_at: u32| -> Option<Vec<u8>> {
            let mut p = b[iloc.2..iloc.2 + 6].to_vec();
            let count = self.items.len() + usize::from(added.is_some());
            p.extend(u16::try_from(count).ok()?.to_be_bytes());
            for (id, ex) in &self.items {
                p.extend(id.to_be_bytes());
                p.extend([0, 0]);
                p.extend(u16::try_from(ex.len()).ok()?.to_be_bytes());
                for (off, len) in ex {
                    p.extend(off.checked_add(delta)?.to_be_bytes());
                    p.extend(len.to_be_bytes());
                }
            }
            if let Some((id, _)) = added {
                p.extend(id.to_be_bytes());
                p.extend([0, 0, 0, 1]);
                p.extend(data_at.to_be_bytes());
                p.extend(u32::try_from(data.len()).ok()?.to_be_bytes());
            }
            bmff_box(b"iloc", &p)
        };
        let meta_with = |new_iloc: &[u8]| -> Option<Vec<u8>> {
            let mut p = b[meta.2..meta.2 + 4].to_vec();
            for (c, e) in self.children.iter().zip(&edited) {
                p.extend(if c.1 == iloc.1 { new_iloc } else { e });
            }
            bmff_box(b"meta", &p)
        };
        // iloc's size does not depend on the offsets in it: measure, then write.
        let grown = meta_with(&iloc_at(0, 0)?)?
            .len()
            .checked_sub(meta.3 - meta.1)?;
        let delta = u32::try_from(grown).ok()?;
        let new_meta = meta_with(&iloc_at(delta, u32::try_from(mdat.3 + grown).ok()?)?)?;

        let mut out = Vec::with_capacity(b.len() + grown + data.len());
        out.extend(&b[..meta.1]);
        out.extend(&new_meta);
        out.extend(&b[meta.3..mdat.1]);
        out.extend(
            u32::try_from(mdat.3 - mdat.1 + data.len())
                .ok()?
                .to_be_bytes(),
        );
        out.extend(&b[mdat.1 + 4..mdat.3]);
        out.extend(data);
        Some(out)
    }
}

/// Adds a metadata item (`Exif`, or `mime` with its content type) describing the
/// primary image to an AVIF that ravif wrote: an `infe` entry (version 2, as ravif's),
/// a `cdsc` reference to the primary item, the data at the end of `mdat`. `None` (file
/// unchanged) for any other layout.
pub(super) fn avif_item(
    b: &[u8],
    kind: &[u8; 4],
    content_type: Option<&str>,
    data: &[u8],
) -> Option<Vec<u8>> {
    let avif = Avif::parse(b)?;
    // iinf, version 0: a 16-bit count, then infe boxes (version 2: 16-bit item ids).
    let iinf = avif.child(b"iinf")?;
    if *b.get(iinf.2)? != 0 {
        return None;
    }
    let entries = bmff_boxes(b, iinf.2 + 6, iinf.3)?;
    let mut id = 0u16;
    for e in &entries {
        if &e.0 != b"infe" || *b.get(e.2)? != 2 {
            return None;
        }
        id = id.max(be16(b, e.2 + 4)?);
    }
    let id = id.checked_add(1)?;
    let mut infe = vec![2, 0, 0, 0];
    infe.extend(id.to_be_bytes());
    infe.extend([0, 0]);
    infe.extend(kind);
    infe.push(0); // no name
    if let Some(t) = content_type {
        infe.extend(t.as_bytes());
        infe.push(0);
    }
    let mut iinf_payload = b[iinf.2..iinf.2 + 4].to_vec();
    iinf_payload.extend(u16::try_from(entries.len() + 1).ok()?.to_be_bytes());
    iinf_payload.extend(&b[iinf.2 + 6..iinf.3]);
    iinf_payload.extend(bmff_box(b"infe", &infe)?);
    let new_iinf = bmff_box(b"iinf", &iinf_payload)?;

    // iref, version 0: add "this item describes the primary one".
    let mut cdsc = Vec::new();
    cdsc.extend(id.to_be_bytes());
    cdsc.extend(1u16.to_be_bytes());
    cdsc.extend(avif.primary.to_be_bytes());
    let cdsc = bmff_box(b"cdsc", &cdsc)?;
    let iref = avif.child(b"iref");
    let mut iref_payload = match iref {
        Some(r) if *b.get(r.2)? != 0 => return None,
        Some(r) => b[r.2..r.3].to_vec(),
        None => vec![0, 0, 0, 0],
    };
    iref_payload.extend(&cdsc);
    let new_iref = bmff_box(b"iref", &iref_payload)?;

    avif.rebuild(
        |c| match &c.0 {
            // Without an iref, the new one follows iinf.
            b"iinf" if iref.is_none() => Some([&new_iinf[..], &new_iref[..]].concat()),
            b"iinf" => Some(new_iinf.clone()),
            b"iref" => Some(new_iref.clone()),
            _ => Some(avif.whole(c).to_vec()),
        },
        Some((id, data)),
    )
}

/// Adds the ICC profile to an AVIF that ravif wrote: a `colr` box of type `prof` joins
/// the item properties and the primary item is associated with it. `None` (file
/// unchanged) for any other layout.
pub(super) fn avif_icc(b: &[u8], icc: &[u8]) -> Option<Vec<u8>> {
    let avif = Avif::parse(b)?;
    let iprp = avif.child(b"iprp")?;
    let props = bmff_boxes(b, iprp.2, iprp.3)?;
    let ipco = *props.iter().find(|x| &x.0 == b"ipco")?;
    let ipma = *props.iter().find(|x| &x.0 == b"ipma")?;
    let index = bmff_boxes(b, ipco.2, ipco.3)?.len() + 1;

    // The new property, and the new association list.
    let mut colr = b"prof".to_vec();
    colr.extend(icc);
    let mut ipco_payload = b[ipco.2..ipco.3].to_vec();
    ipco_payload.extend(bmff_box(b"colr", &colr)?);
    let new_ipco = bmff_box(b"ipco", &ipco_payload)?;
    let (version, flags) = (*b.get(ipma.2)?, *b.get(ipma.2 + 3)?);
    let wide_index = flags & 1 == 1;
    if version != 0 || (!wide_index && index > 127) {
        return None;
    }
    let count = be32(b, ipma.2 + 4)?;
    let mut table = b[ipma.2..ipma.2 + 8].to_vec();
    let mut at = ipma.2 + 8;
    let mut found = false;
    for _ in 0..count {
        let item = be16(b, at)?;
        let n = *b.get(at + 2)? as usize;
        let len = if wide_index { 2 * n } else { n };
        let assoc = b.get(at + 3..at + 3 + len)?;
        table.extend(item.to_be_bytes());
        if item == avif.primary {
            found = true;
            table.push(u8::try_from(n + 1).ok()?);
            table.extend(assoc);
            if wide_index {
                table.extend((index as u16).to_be_bytes());
            } else {
                table.push(index as u8);
            }
        } else {
            table.push(n as u8);
            table.extend(assoc);
        }
        at += 3 + len;
    }
    if !found || at != ipma.3 {
        return None;
    }
    let new_ipma = bmff_box(b"ipma", &table)?;
    let mut iprp_payload = Vec::new();
    for p in &props {
        iprp_payload.extend(match &p.0 {
            b"ipco" => &new_ipco[..],
            b"ipma" => &new_ipma[..],
            _ => &b[p.1..p.3],
        });
    }
    let new_iprp = bmff_box(b"iprp", &iprp_payload)?;
    avif.rebuild(
        |c| match &c.0 {
            b"iprp" => Some(new_iprp.clone()),
            _ => Some(avif.whole(c).to_vec()),
        },
        None,
    )
}
