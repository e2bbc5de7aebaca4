//! The TSDB index (format v2): symbols, series, postings, postings offset table, TOC; and the
//! postings kernels that combine series lists.

pub mod postings;
