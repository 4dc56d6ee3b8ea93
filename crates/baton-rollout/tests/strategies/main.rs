//! Strategy tests through the public API, driven by a fake controller (`driver`): exact
//! transitions per strategy, failure / abort / pause / store-and-resume injected at every
//! step of every strategy, and a seeded random simulation.
#![allow(clippy::unwrap_used)]

mod ab_test;
mod blue_green;
mod canary;
mod driver;
mod every_step;
mod first_deploy;
mod gates;
mod operator;
mod recreate;
mod rolling;
mod sim;
