# ResNet-12 on CUB, class-per-folder layout DATA/{train,val,test}/<class>/<image> (see scripts/seed_stages.sh)
DATASET=cub
MODEL=ResNet12
PRETRAIN_EXTRA=(--num_classes 100)
