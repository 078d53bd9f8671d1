//! stub
use super::transport::*;
use serde_json::Value;
use std::time::Duration;
pub struct HttpTransport;
impl HttpTransport {
    pub fn new(
        _n: &str,
        _u: &str,
        _h: Vec<(String, String)>,
        _o: UnsolicitedHandler,
    ) -> Result<Self, TransportError> {
        Err(TransportError::Unavailable("stub".into()))
    }
}
impl Transport for HttpTransport {
    fn request(
        &self,
        _r: &Value,
        _p: Option<&Value>,
        _t: Duration,
        _o: &mut dyn FnMut(Value),
    ) -> Result<Value, TransportError> {
        Err(TransportError::Closed)
    }
    fn send(&self, _m: &Value) -> Result<(), TransportError> {
        Ok(())
    }
    fn set_protocol(&self, _p: WireProtocol) {}
    fn open_listen_stream(&self) {}
    fn is_alive(&self) -> bool {
        false
    }
    fn close(&self) {}
}
