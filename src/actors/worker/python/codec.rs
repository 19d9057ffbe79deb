//! The frames tserve and TorchServe's Python backend (`ts/protocol/otf_message_handler.py`)
//! exchange over the worker's socket, as TorchServe's Java frontend writes and reads them
//! (`ModelRequestEncoder`, `ModelResponseDecoder`). Integers are big-endian `i32`; a string or
//! byte run is its length, then its bytes; lists end with -1.
//!
//! - Load: `L`, model name, model dir, batch size, handler, GPU id (-1: CPU), envelope, then
//!   `limitMaxImagePixels` as one byte.
//! - Inference: `I`, then per request: its id, header name/value pairs then -1, parameters
//!   (name, content type, value) then -1; after the last request, -1.
//! - Response: code, message, then per prediction: request id, content type, status, reason
//!   phrase, header count and pairs, body; the list ends with -1.

use std::io::{self, Read, Write};

use crate::request::InferenceRequest;

/// What the Load command carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadCommand<'a> {
    pub model_name: &'a str,
    pub model_dir: &'a str,
    pub batch_size: usize,
    pub handler: &'a str,
    /// `None` runs on the CPU.
    pub gpu: Option<usize>,
    pub envelope: &'a str,
    pub limit_max_image_pixels: bool,
}

/// One prediction in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictionFrame {
    pub request_id: String,
    pub content_type: String,
    pub status: i32,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl PredictionFrame {
    /// An intermediate answer (`send_intermediate_predict_response`): the backend marks it with
    /// the header `ts_stream_next: true`, and more frames for the same request follow it.
    pub fn is_intermediate(&self) -> bool {
        self.headers
            .iter()
            .any(|(name, value)| name.eq_ignore_ascii_case("ts_stream_next") && value.eq_ignore_ascii_case("true"))
    }
}

/// A whole response: the batch's code and message, and one frame per request (none when the
/// code is not 200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: i32,
    pub message: String,
    pub predictions: Vec<PredictionFrame>,
}

/// Frames no backend sends past this: a length beyond it means the stream is corrupt.
const MAX_FRAME: usize = 1 << 31;

pub fn encode_load(command: &LoadCommand<'_>) -> Vec<u8> {
    let mut out = vec![b'L'];
    put_bytes(&mut out, command.model_name.as_bytes());
    put_bytes(&mut out, command.model_dir.as_bytes());
    put_int(&mut out, command.batch_size as i32);
    put_bytes(&mut out, command.handler.as_bytes());
    put_int(&mut out, command.gpu.map_or(-1, |gpu| gpu as i32));
    put_bytes(&mut out, command.envelope.as_bytes());
    out.push(u8::from(command.limit_max_image_pixels));
    out
}

pub fn encode_inference<'a>(requests: impl IntoIterator<Item = &'a InferenceRequest>) -> Vec<u8> {
    let mut out = vec![b'I'];
    for request in requests {
        put_bytes(&mut out, request.id.as_bytes());
        for (name, value) in &request.headers {
            put_bytes(&mut out, name.as_bytes());
            put_bytes(&mut out, value.as_bytes());
        }
        put_int(&mut out, -1);
        for parameter in &request.parameters {
            put_bytes(&mut out, parameter.name.as_bytes());
            put_bytes(&mut out, parameter.content_type.as_deref().unwrap_or("").as_bytes());
            put_bytes(&mut out, &parameter.value);
        }
        put_int(&mut out, -1);
    }
    put_int(&mut out, -1);
    out
}

/// Reads one response from the backend.
pub fn read_response(input: &mut impl Read) -> io::Result<Response> {
    let code = read_int(input)?;
    let message = read_string(input)?;
    let mut predictions = Vec::new();
    loop {
        let length = read_int(input)?;
        if length == -1 {
            break;
        }
        let request_id = string(read_exact(input, length)?)?;
        let content_type = read_string(input)?;
        let status = read_int(input)?;
        let reason = read_string(input)?;
        let count = read_int(input)?;
        let mut headers = Vec::with_capacity(count.clamp(0, 64) as usize);
        for _ in 0..count {
            headers.push((read_string(input)?, read_string(input)?));
        }
        let length = read_int(input)?;
        let body = read_exact(input, length)?;
        predictions.push(PredictionFrame {
            request_id,
            content_type,
            status,
            reason,
            headers,
            body,
        });
    }
    Ok(Response {
        code,
        message,
        predictions,
    })
}

/// Writes a frame and flushes it.
pub fn send(output: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    output.write_all(frame)?;
    output.flush()
}

fn put_int(out: &mut Vec<u8>, value: i32) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_int(out, bytes.len() as i32);
    out.extend_from_slice(bytes);
}

fn read_int(input: &mut impl Read) -> io::Result<i32> {
    let mut bytes = [0u8; 4];
    input.read_exact(&mut bytes)?;
    Ok(i32::from_be_bytes(bytes))
}

fn read_exact(input: &mut impl Read, length: i32) -> io::Result<Vec<u8>> {
    let length = usize::try_from(length)
        .ok()
        .filter(|&n| n <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("invalid frame length {length}")))?;
    let mut bytes = vec![0u8; length];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn read_string(input: &mut impl Read) -> io::Result<String> {
    let length = read_int(input)?;
    string(read_exact(input, length)?)
}

fn string(bytes: Vec<u8>) -> io::Result<String> {
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Parameter;

    #[test]
    fn load_frames_as_torchserve_writes_them() {
        let frame = encode_load(&LoadCommand {
            model_name: "m",
            model_dir: "/d",
            batch_size: 4,
            handler: "h.py",
            gpu: None,
            envelope: "",
            limit_max_image_pixels: true,
        });
        let expected = [
            &b"L"[..],
            &[0, 0, 0, 1],
            b"m",
            &[0, 0, 0, 2],
            b"/d",
            &[0, 0, 0, 4],
            &[0, 0, 0, 4],
            b"h.py",
            &[0xff, 0xff, 0xff, 0xff],
            &[0, 0, 0, 0],
            &[1],
        ]
        .concat();
        assert_eq!(frame, expected);
    }

    #[test]
    fn inference_frames_carry_ids_headers_and_parameters() {
        let request = InferenceRequest {
            id: "r1".into(),
            headers: vec![("h".into(), "v".into())],
            parameters: vec![Parameter {
                name: "body".into(),
                content_type: Some("application/json".into()),
                value: "[1]".into(),
            }],
            tensors: None,
        };
        let frame = encode_inference([&request]);
        let end = [0xff, 0xff, 0xff, 0xff];
        let expected = [
            &b"I"[..],
            &[0, 0, 0, 2],
            b"r1",
            &[0, 0, 0, 1],
            b"h",
            &[0, 0, 0, 1],
            b"v",
            &end,
            &[0, 0, 0, 4],
            b"body",
            &[0, 0, 0, 16],
            b"application/json",
            &[0, 0, 0, 3],
            b"[1]",
            &end,
            &end,
        ]
        .concat();
        assert_eq!(frame, expected);
    }

    fn frame(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn responses_read_back() {
        let bytes = frame(&[
            &200i32.to_be_bytes(),
            &18i32.to_be_bytes(),
            b"Prediction success",
            &2i32.to_be_bytes(),
            b"r1",
            &10i32.to_be_bytes(),
            b"text/plain",
            &201i32.to_be_bytes(),
            &0i32.to_be_bytes(),
            &1i32.to_be_bytes(),
            &1i32.to_be_bytes(),
            b"k",
            &1i32.to_be_bytes(),
            b"v",
            &2i32.to_be_bytes(),
            b"hi",
            &(-1i32).to_be_bytes(),
        ]);
        let response = read_response(&mut bytes.as_slice()).unwrap();
        assert_eq!(response.code, 200);
        assert_eq!(response.message, "Prediction success");
        assert_eq!(
            response.predictions,
            vec![PredictionFrame {
                request_id: "r1".into(),
                content_type: "text/plain".into(),
                status: 201,
                reason: String::new(),
                headers: vec![("k".into(), "v".into())],
                body: b"hi".to_vec(),
            }]
        );
    }

    #[test]
    fn truncated_or_corrupt_responses_are_errors_not_panics() {
        let bytes = frame(&[&200i32.to_be_bytes(), &5i32.to_be_bytes(), b"ab"]);
        assert!(read_response(&mut bytes.as_slice()).is_err());
        let bytes = frame(&[&200i32.to_be_bytes(), &(-7i32).to_be_bytes()]);
        assert!(read_response(&mut bytes.as_slice()).is_err());
    }
}
