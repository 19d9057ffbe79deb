//! The Open Inference Protocol's infer bodies, both ways, with the binary tensor data extension:
//! a JSON header (`Inference-Header-Content-Length` bytes long when binary data follows it), then
//! each binary tensor's bytes in the order the JSON names them.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::tensor::{select_outputs, DataType, TensorData};

#[derive(Deserialize)]
struct InferRequestJson {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InputJson>,
    #[serde(default)]
    outputs: Option<Vec<OutputJson>>,
}

#[derive(Deserialize)]
struct InputJson {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// A requested output: its name, and whether it comes back binary (`None`: the request's
/// default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedOutput {
    pub name: String,
    pub binary: Option<bool>,
}

/// A parsed infer request.
#[derive(Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<TensorData>,
    /// `None`: every output.
    pub outputs: Option<Vec<RequestedOutput>>,
    /// `binary_data_output`: outputs not asked for otherwise come back binary.
    pub binary_by_default: bool,
}

/// Parses an infer body; `header_length` is `Inference-Header-Content-Length`, when sent.
pub fn parse_infer(body: &Bytes, header_length: Option<usize>) -> Result<InferRequest, String> {
    let json_length = header_length.unwrap_or(body.len());
    if json_length > body.len() {
        return Err(format!(
            "Inference-Header-Content-Length is {json_length}, but the body has only {} bytes",
            body.len()
        ));
    }
    let request: InferRequestJson =
        serde_json::from_slice(&body[..json_length]).map_err(|e| format!("malformed infer request: {e}"))?;
    let mut binary = body.slice(json_length..);
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in request.inputs {
        let datatype = DataType::parse(&input.datatype)
            .ok_or_else(|| format!("input '{}': unknown datatype '{}'", input.name, input.datatype))?;
        let tensor = match input.parameters.get("binary_data_size") {
            Some(size) => {
                let size = size
                    .as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| format!("input '{}': binary_data_size must be a count of bytes", input.name))?;
                if size > binary.len() {
                    return Err(format!(
                        "input '{}': binary_data_size {size} is more than the {} binary bytes left",
                        input.name,
                        binary.len()
                    ));
                }
                TensorData::from_binary(&input.name, datatype, input.shape, binary.split_to(size))?
            }
            None => {
                let data = input
                    .data
                    .as_ref()
                    .ok_or_else(|| format!("input '{}' has neither data nor binary_data_size", input.name))?;
                TensorData::from_json(&input.name, datatype, input.shape, data)?
            }
        };
        inputs.push(tensor);
    }
    if !binary.is_empty() {
        return Err(format!("{} bytes of binary data that no input claims", binary.len()));
    }
    let outputs = request.outputs.map(|outputs| {
        outputs
            .into_iter()
            .map(|output| RequestedOutput {
                binary: output.parameters.get("binary_data").and_then(Value::as_bool),
                name: output.name,
            })
            .collect()
    });
    Ok(InferRequest {
        id: request.id,
        inputs,
        outputs,
        binary_by_default: request.parameters.get("binary_data_output").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// A rendered infer response: the body, and the JSON header's length when binary data follows.
#[derive(Debug)]
pub struct InferResponse {
    pub body: Bytes,
    pub header_length: Option<usize>,
}

/// Renders the outputs the request asked for (all of them, by default), each as JSON `data` or
/// binary. An output asked for that the model did not produce is an error.
pub fn render_infer(
    model: &str,
    version: &str,
    id: &str,
    outputs: Vec<TensorData>,
    request: &InferRequest,
) -> Result<InferResponse, String> {
    let wanted: Option<Vec<&str>> = request.outputs.as_ref().map(|o| o.iter().map(|w| w.name.as_str()).collect());
    let binary = |index: usize| {
        let asked = request.outputs.as_ref().and_then(|o| o[index].binary);
        asked.unwrap_or(request.binary_by_default)
    };
    let selected: Vec<(TensorData, bool)> = select_outputs(outputs, wanted.as_deref(), model)?
        .into_iter()
        .enumerate()
        .map(|(index, output)| (output, binary(index)))
        .collect();
    let mut blobs = Vec::new();
    let mut rendered = Vec::with_capacity(selected.len());
    for (output, binary) in selected {
        let mut entry = json!({
            "name": output.name,
            "datatype": output.datatype.name(),
            "shape": output.shape,
        });
        if binary {
            entry["parameters"] = json!({ "binary_data_size": output.data.len() });
            blobs.push(output.data);
        } else {
            entry["data"] = Value::Array(output.to_json()?);
        }
        rendered.push(entry);
    }
    let header = json!({
        "model_name": model,
        "model_version": version,
        "id": id,
        "outputs": rendered,
    });
    let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    if blobs.is_empty() {
        return Ok(InferResponse {
            body: Bytes::from(header),
            header_length: None,
        });
    }
    let mut body = BytesMut::with_capacity(header.len() + blobs.iter().map(Bytes::len).sum::<usize>());
    body.put_slice(&header);
    blobs.iter().for_each(|blob| body.put_slice(blob));
    Ok(InferResponse {
        body: body.freeze(),
        header_length: Some(header.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: Value, binary: &[u8]) -> (Bytes, Option<usize>) {
        let mut bytes = serde_json::to_vec(&json).unwrap();
        let length = bytes.len();
        bytes.extend_from_slice(binary);
        (Bytes::from(bytes), (!binary.is_empty()).then_some(length))
    }

    #[test]
    fn json_and_binary_inputs() {
        let floats: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|f| f.to_le_bytes()).collect();
        let (bytes, length) = body(
            json!({
                "id": "r1",
                "inputs": [
                    {"name": "a", "shape": [1, 2], "datatype": "INT32", "data": [[1, 2]]},
                    {"name": "b", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
                ],
                "outputs": [{"name": "output__0", "parameters": {"binary_data": true}}],
                "parameters": {"binary_data_output": false},
            }),
            &floats,
        );
        let request = parse_infer(&bytes, length).unwrap();
        assert_eq!(request.id.as_deref(), Some("r1"));
        assert_eq!(request.inputs[0].to_json().unwrap(), vec![json!(1), json!(2)]);
        assert_eq!(request.inputs[1].to_json().unwrap(), vec![json!(1.5), json!(-2.0)]);
        assert_eq!(request.outputs.as_ref().unwrap()[0].binary, Some(true));
        assert!(!request.binary_by_default);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases = [
            (json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP8", "data": [1]}]}), "unknown datatype"),
            (json!({"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": [1]}]}), "1 elements"),
            (json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}]}), "neither data"),
            (json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}), "binary bytes left"),
            (json!({"input": []}), "malformed"),
        ];
        for (json, expected) in cases {
            let (bytes, _) = body(json, b"");
            let err = parse_infer(&bytes, None).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
        let (bytes, _) = body(json!({"inputs": []}), b"");
        assert!(parse_infer(&bytes, Some(bytes.len() + 1)).is_err());
        let (bytes, length) = body(json!({"inputs": []}), b"xx");
        assert!(parse_infer(&bytes, length).unwrap_err().contains("no input claims"));
    }

    fn output(name: &str, values: &[f32]) -> TensorData {
        let data: Vec<u8> = values.iter().flat_map(|f| f.to_le_bytes()).collect();
        TensorData::from_binary(name, DataType::Fp32, vec![1, values.len() as i64], Bytes::from(data)).unwrap()
    }

    #[test]
    fn outputs_as_json_or_binary_as_asked() {
        let (bytes, _) = body(json!({"inputs": [], "parameters": {"binary_data_output": true}}), b"");
        let request = parse_infer(&bytes, None).unwrap();
        let response = render_infer("m", "1.0", "i", vec![output("output__0", &[1.0, 2.0])], &request).unwrap();
        let length = response.header_length.unwrap();
        let header: Value = serde_json::from_slice(&response.body[..length]).unwrap();
        assert_eq!(header["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(header["model_version"], "1.0");
        assert_eq!(&response.body[length..], &[0, 0, 128, 63, 0, 0, 0, 64]);

        let (bytes, _) = body(json!({"inputs": [], "outputs": [{"name": "output__1"}]}), b"");
        let request = parse_infer(&bytes, None).unwrap();
        let outputs = vec![output("output__0", &[1.0]), output("output__1", &[3.0])];
        let response = render_infer("m", "1.0", "i", outputs.clone(), &request).unwrap();
        assert_eq!(response.header_length, None);
        let header: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(header["outputs"], json!([{"name": "output__1", "datatype": "FP32", "shape": [1, 1], "data": [3.0]}]));

        let (bytes, _) = body(json!({"inputs": [], "outputs": [{"name": "nope"}]}), b"");
        let request = parse_infer(&bytes, None).unwrap();
        assert!(render_infer("m", "1.0", "i", outputs, &request).unwrap_err().contains("'nope'"));
    }
}
