//! Test support: starts the real gateway and fixture servers, MCP test clients
