namespace Elect.Runner;

/// <summary>
/// Full-size architecture configs for benchmarking with random weights when no checkpoint is at
/// hand: Stable Diffusion 1.5 InstructPix2Pix (timbrooks/instruct-pix2pix) and SD3-medium-sized
/// UltraEdit (BleachNick/SD3_UltraEdit_freeform). Values are those of the public config.json files.
/// </summary>
public static class BenchConfigs
{
    public const string Ip2pUnet = """
    {
      "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
      "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false, "cross_attention_dim": 768,
      "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 8, "layers_per_block": 2,
      "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
      "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    }
    """;

    public const string Sd15Vae = """
    {
      "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
      "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
      "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
      "sample_size": 512, "scaling_factor": 0.18215,
      "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
    }
    """;

    /// <summary>timbrooks/instruct-pix2pix's scheduler (also the demo model's).</summary>
    public const string Ip2pScheduler = Elect.Pipelines.InstructPix2Pix.InstructPix2PixModel.SchedulerConfigJson;

    /// <summary>SD3-medium transformer with UltraEdit's 32 input channels (16 noisy + 16 image latents).</summary>
    public const string UltraEditTransformer = """
    {
      "_class_name": "SD3Transformer2DModel", "attention_head_dim": 64, "caption_projection_dim": 1536,
      "in_channels": 32, "joint_attention_dim": 4096, "num_attention_heads": 24, "num_layers": 24,
      "out_channels": 16, "patch_size": 2, "pooled_projection_dim": 2048, "pos_embed_max_size": 192,
      "sample_size": 128, "qk_norm": null, "dual_attention_layers": []
    }
    """;

    public const string Sd3Vae = """
    {
      "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
      "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
      "in_channels": 3, "latent_channels": 16, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
      "sample_size": 1024, "scaling_factor": 1.5305, "shift_factor": 0.0609, "use_quant_conv": false,
      "use_post_quant_conv": false, "mid_block_add_attention": true,
      "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
    }
    """;

    public const string FlowScheduler = """
    { "_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0 }
    """;
}
