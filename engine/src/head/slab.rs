//! A shard's series by id, stored in place in fixed pages: finding a series by id reads one
//! small page table (it stays in cache) and then the series itself, with no pointer to chase
//! in between, and a growing head never moves the series it already holds.

use super::series::MemSeries;

/// Series per page (a page of 1024 is about 150 KiB).
const PAGE_BITS: u32 = 10;
const PAGE: usize = 1 << PAGE_BITS;

#[derive(Debug, Default)]
pub(crate) struct Slab {
    pages: Vec<Box<[Option<MemSeries>]>>,
    /// Ids handed out so far: every id below is a slot, held or empty.
    ids: u32,
}

fn at(id: u32) -> (usize, usize) {
    ((id >> PAGE_BITS) as usize, id as usize & (PAGE - 1))
}

impl Slab {
    /// The series `id`, when held.
    pub fn get(&self, id: u32) -> Option<&MemSeries> {
        let (p, i) = at(id);
        self.pages.get(p)?[i].as_ref()
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut MemSeries> {
        let (p, i) = at(id);
        self.pages.get_mut(p)?[i].as_mut()
    }

    /// Stores `s` under a new id.
    pub fn push(&mut self, s: MemSeries) -> u32 {
        let id = self.ids;
        let (p, i) = at(id);
        if p == self.pages.len() {
            self.pages.push((0..PAGE).map(|_| None).collect());
        }
        self.pages[p][i] = Some(s);
        self.ids += 1;
        id
    }

    /// Stores `s` under `id`, an id handed out before; returns what was there.
    pub fn replace(&mut self, id: u32, s: Option<MemSeries>) -> Option<MemSeries> {
        let (p, i) = at(id);
        std::mem::replace(&mut self.pages[p][i], s)
    }

    /// Ids handed out so far (held or not).
    pub fn ids(&self) -> u32 {
        self.ids
    }

    /// Every series held.
    pub fn values(&self) -> impl Iterator<Item = &MemSeries> + '_ {
        self.pages.iter().flat_map(|p| p.iter()).flatten()
    }

    /// Every series held, with its id, for changing.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut MemSeries)> + '_ {
        self.pages
            .iter_mut()
            .flat_map(|p| p.iter_mut())
            .enumerate()
            .filter_map(|(id, s)| Some((id as u32, s.as_mut()?)))
    }

    /// Bytes the pages take.
    pub fn heap_bytes(&self) -> usize {
        self.pages.len() * PAGE * std::mem::size_of::<Option<MemSeries>>()
            + self.pages.capacity() * std::mem::size_of::<Box<[Option<MemSeries>]>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::labels::SeriesLabels;

    fn series(r: u64) -> MemSeries {
        MemSeries::new(SeriesLabels::from_pairs([("__name__", "x")]), r)
    }

    #[test]
    fn ids_cross_pages_and_emptied_slots_read_as_none() {
        let mut s = Slab::default();
        for r in 0..(PAGE as u64 * 2 + 5) {
            assert_eq!(s.push(series(r)), r as u32);
        }
        assert_eq!(s.get(PAGE as u32 + 3).map(|m| m.r), Some(PAGE as u64 + 3));
        assert!(s.replace(7, None).is_some());
        assert!(s.get(7).is_none());
        assert!(s.get(s.ids()).is_none());
        assert_eq!(s.values().count(), PAGE * 2 + 4);
        s.replace(7, Some(series(99)));
        s.get_mut(7).unwrap().r = 100;
        assert_eq!(
            s.iter_mut().find(|(id, _)| *id == 7).map(|(_, m)| m.r),
            Some(100)
        );
    }
}
