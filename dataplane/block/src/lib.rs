//! The Phlox object format (see ARCHITECTURE.md, "Block format").
pub mod paths;
