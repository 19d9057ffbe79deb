//! Whether a Python worker's reply answers the batch it was sent, and only that batch, and
//! whether more replies for it follow.
//!
//! TorchServe's backend answers each Inference frame with one response frame; a handler that
//! calls `send_intermediate_predict_response` sends intermediate ones before it (their frames
//! marked `ts_stream_next: true`), so a batch is answered when a response has no intermediate
//! frame left. A reply for a request that is not waiting, or two in one response for the same
//! request, means the connection no longer pairs replies with requests (a handler that writes to
//! the socket itself): the next reply read could be an answer meant for another request. Such a
//! worker is out of step and must be retired, never read on.

use super::codec::Response;

/// Why a reply shows its worker out of step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutOfStep {
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

/// Where a batch is after a response that is in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Every request still waiting has its last answer (or the batch failed as a whole).
    Answered,
    /// Some frames were intermediate: more responses follow for those requests.
    Streaming,
}

/// Checks a response against the ids of the batch's requests still waiting. A response that
/// names fewer requests than that is in step (TorchServe answers the missing ones itself); one
/// that names others or repeats one is not.
pub fn check(waiting: &[&str], response: &Response) -> Result<Progress, OutOfStep> {
    let mut seen: Vec<&str> = Vec::with_capacity(response.predictions.len());
    for frame in &response.predictions {
        let id = frame.request_id.as_str();
        if !waiting.contains(&id) {
            return Err(OutOfStep::Unasked(id.to_string()));
        }
        if seen.contains(&id) {
            return Err(OutOfStep::Repeated(id.to_string()));
        }
        seen.push(id);
    }
    let streaming = response.predictions.iter().any(|frame| frame.is_intermediate());
    Ok(if streaming { Progress::Streaming } else { Progress::Answered })
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
        assert_eq!(check(&["a", "b"], &reply), Ok(Progress::Answered));
        assert_eq!(check(&["a", "b"], &response(vec![frame("a", &[])])), Ok(Progress::Answered), "a missing reply is the batch's own failure");
        let failed = Response {
            code: 503,
            message: "Prediction failed".into(),
            predictions: vec![],
        };
        assert_eq!(check(&["a"], &failed), Ok(Progress::Answered));
    }

    #[test]
    fn an_intermediate_reply_means_more_replies_follow() {
        let reply = response(vec![frame("a", &[("ts_stream_next", "true")]), frame("b", &[("ts_stream_next", "true")])]);
        assert_eq!(check(&["a", "b"], &reply), Ok(Progress::Streaming));
        let last = response(vec![frame("a", &[("ts_stream_next", "false")])]);
        assert_eq!(check(&["a"], &last), Ok(Progress::Answered));
        // Once answered, a request is no longer waiting: a frame for it is out of step.
        assert_eq!(check(&["b"], &last), Err(OutOfStep::Unasked("a".into())));
    }

    #[test]
    fn a_reply_for_another_request_or_twice_for_one_is_out_of_step() {
        assert_eq!(check(&["a"], &response(vec![frame("old", &[])])), Err(OutOfStep::Unasked("old".into())));
        assert_eq!(check(&["a"], &response(vec![frame("a", &[]), frame("a", &[])])), Err(OutOfStep::Repeated("a".into())));
    }
}
