//! The harness every end-to-end test uses: a private `redis-server` on a free
//! port in a temporary directory (stopped, restarted or killed on purpose),
//! the sandbox over real HTTP, and the api and a worker in-process, behind
//! one [`TestGateway`] with `send`, `message` and `wait_until`.

mod backlog;
mod clock;
mod gateway;
mod rates;
mod receiver;
mod redis_cluster;
mod redis_server;
mod tcp_proxy;
mod wait;

pub use backlog::template_backlog;
pub use clock::rfc3339_in;
pub use gateway::{
    APP_SECRET, GatewayOptions, KEY_ALL, KEY_ONE, TestGateway, VERIFY_TOKEN, WABA, WorkerProcess,
    delete_from, message_from, phone_number_id,
};
pub use rates::{RateReport, rate_reports, send_counts};
pub use receiver::SignedReceiver;
pub use redis_cluster::RedisCluster;
pub use redis_server::RedisServer;
pub use tcp_proxy::TcpProxy;
pub use wait::{wait_until, wait_until_every};
