//! One admission control for every job kind (§12.3): a node refuses new work once shutdown
//! began, holds at most `max_concurrent` jobs at once (more get `busy`), and bounds the size
//! of every input tensor before a model sees it. A job holds its [`Slot`] until it ends,
//! however it ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use quorate_protocol::messages::{ErrorCode, ErrorFrame};
use quorate_protocol::tensor::Tensor;

/// The node's job slots and input bounds.
pub struct Admission {
    in_flight: AtomicU64,
    capacity: u64,
    max_input_elements: u64,
    shutting_down: AtomicBool,
}

/// One taken job slot; released when dropped.
pub struct Slot(Arc<Admission>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    /// `capacity` jobs at once, at most `max_input_elements` elements per input tensor.
    pub fn new(capacity: u64, max_input_elements: u64) -> Self {
        Self {
            in_flight: AtomicU64::new(0),
            capacity,
            max_input_elements,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Takes a slot, or says why not (`shutting_down`, `busy`).
    pub fn admit(self: &Arc<Self>) -> Result<Slot, ErrorFrame> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(ErrorFrame::new(
                ErrorCode::ShuttingDown,
                "node is shutting down",
            ));
        }
        let busy = self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.capacity;
        let slot = Slot(self.clone());
        if busy {
            return Err(ErrorFrame::new(
                ErrorCode::Busy,
                format!("all {} slots busy", self.capacity),
            ));
        }
        Ok(slot)
    }

    /// Refuses an input tensor larger than the node accepts (`too_large`).
    pub fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), ErrorFrame> {
        match inputs
            .iter()
            .find(|t| t.len() as u64 > self.max_input_elements)
        {
            Some(t) => Err(ErrorFrame::new(
                ErrorCode::TooLarge,
                format!(
                    "input {:?} has {} elements; this node accepts at most {}",
                    t.name(),
                    t.len(),
                    self.max_input_elements
                ),
            )),
            None => Ok(()),
        }
    }

    /// From now on every new job is refused (§12.5).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Jobs running now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Jobs the node runs at once.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use quorate_protocol::tensor::DType;

    fn code(r: Result<Slot, ErrorFrame>) -> Option<ErrorCode> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn slots_are_bounded_and_released_however_a_job_ends() {
        let a = Arc::new(Admission::new(2, 4));
        let one = a.admit().unwrap();
        let two = a.admit().unwrap();
        assert_eq!(code(a.admit()), Some(ErrorCode::Busy));
        assert_eq!(a.in_flight(), 2, "a refused request holds no slot");
        drop(one);
        let three = a.admit().unwrap();
        drop((two, three));
        assert_eq!(a.in_flight(), 0);
        a.begin_shutdown();
        assert_eq!(code(a.admit()), Some(ErrorCode::ShuttingDown));
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn inputs_larger_than_the_bound_are_refused() {
        let a = Admission::new(1, 4);
        let t = |n: usize| Tensor::new("x", DType::F32, vec![n as u64], vec![0; 4 * n]).unwrap();
        assert!(a.check_inputs(&[t(4)]).is_ok());
        assert_eq!(
            a.check_inputs(&[t(4), t(5)]).unwrap_err().code,
            ErrorCode::TooLarge
        );
    }
}
