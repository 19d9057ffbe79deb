//! Whether a Python worker's reply answers the batch it was sent, and only that batch.
//!
//! TorchServe's backend answers each Inference frame with exactly one response frame, unless a
//! handler calls `send_intermediate_predict_response` (frames marked `ts_stream_next: true`,
//! with more for the same requests behind them) or writes to the socket itself. Either way the
//! connection no longer pairs one reply with one request: the next reply read would be an answer
//! meant for another request. Such a worker is out of step and must be retired, never read on.

use super::codec::Response;

/// Why a reply shows its worker out of step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutOfStep {
    /// An intermediate answer: more replies than requests follow it.
    #[error("the handler sent an intermediate response (send_intermediate_predict_response) for request {0}")]
    Intermediate(String),
    /// A reply for a request the batch did not hold: a reply left over from an earlier batch, or
    /// one the handler made up.
    #[error("a reply for request {0}, which it was not sent")]
    Unasked(String),
    /// Two replies in one response for the same request.
    #[error("two replies for request {0}")]
    Repeated(String),
    /// Bytes on the connection after a whole reply, or while idle: replies nobody asked for.
    #[error("it wrote to its connection when no request was waiting")]
    Unsolicited,
}

/// Checks a response against the ids of the batch it answers. A response that names fewer
/// requests than the batch holds is in step (TorchServe answers the missing ones itself); one
/// that names others, repeats one, or is intermediate is not.
pub fn check(batch: &[&str], response: &Response) -> Result<(), OutOfStep> {
    let mut seen: Vec<&str> = Vec::with_capacity(response.predictions.len());
    for frame in &response.predictions {
        let id = frame.request_id.as_str();
        if !batch.contains(&id) {
            return Err(OutOfStep::Unasked(id.to_string()));
        }
        if seen.contains(&id) {
            return Err(OutOfStep::Repeated(id.to_string()));
        }
        if frame.is_intermediate() {
            return Err(OutOfStep::Intermediate(id.to_string()));
        }
        seen.push(id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::worker::python::codec::PredictionFrame;

    fn frame(id: &str, headers: &[(&str, &str)]) -> PredictionFrame {
        PredictionFrame {
            request_id: id.into(),
            content_type: String::new(),
            status: 200,
            reason: String::new(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: b"{}".to_vec(),
        }
    }

    fn response(frames: Vec<PredictionFrame>) -> Response {
        Response {
            code: 200,
            message: "Prediction success".into(),
            predictions: frames,
        }
    }

    #[test]
    fn one_final_reply_per_request_is_in_step() {
        let reply = response(vec![frame("b", &[]), frame("a", &[("ts_stream_next", "false")])]);
        assert_eq!(check(&["a", "b"], &reply), Ok(()));
        assert_eq!(check(&["a", "b"], &response(vec![frame("a", &[])])), Ok(()), "a missing reply is the batch's own failure");
        let failed = Response {
            code: 503,
            message: "Prediction failed".into(),
            predictions: vec![],
        };
        assert_eq!(check(&["a"], &failed), Ok(()));
    }

    #[test]
    fn an_intermediate_reply_means_more_replies_than_requests() {
        let reply = response(vec![frame("a", &[("ts_stream_next", "true")])]);
        assert_eq!(check(&["a"], &reply), Err(OutOfStep::Intermediate("a".into())));
    }

    #[test]
    fn a_reply_for_another_request_or_twice_for_one_is_out_of_step() {
        assert_eq!(check(&["a"], &response(vec![frame("old", &[])])), Err(OutOfStep::Unasked("old".into())));
        assert_eq!(check(&["a"], &response(vec![frame("a", &[]), frame("a", &[])])), Err(OutOfStep::Repeated("a".into())));
    }
}
