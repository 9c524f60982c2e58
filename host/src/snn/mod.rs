//! The spiking network in candle (in progress)
