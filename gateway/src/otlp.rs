//! The OTLP trace messages Watershed sends, as protobuf: the subset of
//! `opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto`
//! that a span export needs, with the official field numbers and wire types
//! (as prost-build generates them). Fields left out are optional in the
//! protocol; a collector reads their absence as empty.

/// `ExportTraceServiceRequest`, the body of `POST /v1/traces`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ExportTraceServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportTracePartialSuccess>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ExportTracePartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Span {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub trace_state: String,
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(enumeration = "SpanKind", tag = "6")]
    pub kind: i32,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum SpanKind {
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Status {
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(enumeration = "StatusCode", tag = "3")]
    pub code: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum StatusCode {
    Unset = 0,
    Ok = 1,
    Error = 2,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5")]
    pub value: Option<any_value::Value>,
}

pub mod any_value {
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        #[prost(message, tag = "5")]
        ArrayValue(super::ArrayValue),
    }
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The bytes of a small span, worked out by hand from the protobuf
    /// encoding rules, so a wrong field number or wire type shows up here
    /// and not only at a collector.
    #[test]
    fn a_span_encodes_to_the_standard_wire_format() {
        let span = Span {
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            flags: 0x101,
            name: "chat m".to_owned(),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: vec![KeyValue {
                key: "n".to_owned(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(7)),
                }),
            }],
            status: Some(Status {
                message: "e".to_owned(),
                code: StatusCode::Error as i32,
            }),
            ..Default::default()
        };
        let mut want = vec![0x0a, 16];
        want.extend([0xab; 16]); // 1: trace_id, bytes
        want.extend([0x12, 8]);
        want.extend([0xcd; 8]); // 2: span_id, bytes
        want.extend([0x2a, 6]);
        want.extend(b"chat m"); // 5: name, string
        want.extend([0x30, 3]); // 6: kind, varint
        want.extend([0x39, 1, 0, 0, 0, 0, 0, 0, 0]); // 7: start, fixed64
        want.extend([0x41, 2, 0, 0, 0, 0, 0, 0, 0]); // 8: end, fixed64
                                                     // 9: attribute {1: "n", 2: {3: 7}}
        want.extend([0x4a, 7, 0x0a, 1, b'n', 0x12, 2, 0x18, 7]);
        // 15: status {2: "e", 3: 2}
        want.extend([0x7a, 5, 0x12, 1, b'e', 0x18, 2]);
        // 16: flags, fixed32 (tag 16 takes two bytes)
        want.extend([0x85, 0x01, 0x01, 0x01, 0, 0]);
        assert_eq!(span.encode_to_vec(), want);
    }
}
